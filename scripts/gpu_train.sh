#!/usr/bin/env bash
# Train kerakp on a machine that has JAX with CUDA but no TensorFlow and no internet (the lent GPU machine:
# Python 3.12 with JAX, OpenCV, pandas, click, PyYAML, h5py, matplotlib, tqdm; it lacks keras, namex, optree).
#
# Here, once (needs the package registry and ../shared; .whl/ and .data/ are git-ignored):
#   scripts/gpu_train.sh wheels                       # keras, namex, optree wheels for Python 3.12 -> .whl/
#   scripts/gpu_train.sh pack ../shared/data/ytf68 ytf68 ytf68
#                                                     # 160 px face crops (layout ytf68) + ImageNet weights -> .data/
# There (the device tool's run with carry [".whl", ".data"]; together they must stay under 64 MiB):
#   scripts/gpu_train.sh train ytf68 configs/ytf68_mobilenetv2.yaml $OUT/run [more kerakp train options]
# The run folder's model.keras loads on any backend; export it here with `kerakp export` (TensorFlow).
#
# Variables: PYTHON (default python3), PY_VERSION (wheels' Python, default 3.12), CROP (pack side, default 160),
# KERAS_BACKEND (train, default jax).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

case "${1:-}" in
  wheels)
    rm -rf .whl
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "keras==$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("keras"))')" namex optree
    du -sh .whl ;;
  pack)
    source=${2:?pack SOURCE NAME FORMAT}; name=${3:?pack SOURCE NAME FORMAT}; format=${4:?pack SOURCE NAME FORMAT}
    mkdir -p .data/weights
    rm -rf ".data/$name"
    # keep the source's layout (format) so that person ids, and with them the validation split, stay the same
    "$PYTHON" -m kerakp convert "$source" ".data/$name" --to "$format" --crop "${CROP:-160}"
    cp -n ../shared/weights/*.weights.h5 .data/weights/ 2>/dev/null || true
    du -sh .data ;;
  train)
    name=${2:?train NAME CONFIG OUT}; config=${3:?train NAME CONFIG OUT}; out=${4:?train NAME CONFIG OUT}; shift 4
    if [ -d .whl ]; then
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kerakp-site .whl/*.whl
      export PYTHONPATH=/tmp/kerakp-site
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=${KERAS_BACKEND:-jax}
    weights=(); for w in .data/weights/*.weights.h5; do [ -f "$w" ] && [[ "$(basename "$w")" == *"$(grep -m1 '^backbone:' "$config" | awk '{print $2}')"* ]] && weights=(--weights "$w"); done
    "$PYTHON" -m kerakp info
    "$PYTHON" -m kerakp train --config "$config" --data ".data/$name" --out "$out" "${weights[@]}" "$@" ;;
  *)
    sed -n '2,16p' "$0"; exit 2 ;;
esac
