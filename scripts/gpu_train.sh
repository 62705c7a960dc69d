#!/usr/bin/env bash
# Train kerakp on a machine that has JAX with CUDA but no TensorFlow and no internet (the lent GPU machine:
# Python 3.12 with JAX, OpenCV, pandas, click, PyYAML, h5py, matplotlib, tqdm; it lacks keras, namex, optree).
#
# Here, once (needs the package registry and ../shared; .whl/ and .data/ are git-ignored):
#   scripts/gpu_train.sh wheels                       # keras, namex, optree wheels for Python 3.12 -> .whl/
#   scripts/gpu_train.sh pack ../shared/data/ytf68 ytf68
#                                                     # a kerakp pack of 160 px face crops (JPEG) + ImageNet weights -> .data/
# There (the device tool's run with carry [".whl", ".data/NAME", ".data/weights"]; the whole working tree,
# saved_models/ included, travels and must stay under 64 MiB: `pack` prints the total):
#   scripts/gpu_train.sh train ytf68 kerakp/recipes/ytf68_mobilenetv2_heatmap.yaml $OUT/run [more kerakp train options]
# (14 forked data workers; JAX warns that fork may deadlock, which it did not in these runs.)
# The crops hide the detector's view of whole faces, so `train` fits no detector boxes: back here, run
#   kerakp fit-detector RUN/model.keras --data ../shared/data/ytf68
# on the original images; the model loads on any backend; export it here with `kerakp export` (TensorFlow).
#
# Variables: PYTHON (default python3), PY_VERSION (wheels' Python, default 3.12), CROP, CONTEXT and QUALITY
# (pack: crop side, default 160; crop side / landmark-box side, default 2.0; JPEG quality, default 95),
# KERAS_BACKEND (train, default jax), WORKERS (train's data workers, default 14).
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
    source=${2:?pack SOURCE NAME}; name=${3:?pack SOURCE NAME}
    mkdir -p .data/weights
    # a pack keeps the persons, and with them the validation split, of its source
    "$PYTHON" -m kerakp pack "$source" ".data/$name" --size "${CROP:-160}" --context "${CONTEXT:-2.0}" \
      --quality "${QUALITY:-95}" --overwrite
    cp -n ../shared/weights/*.weights.h5 .data/weights/ 2>/dev/null || true
    tracked=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb | tail -1 | cut -f1)
    carried=$(du -cb .whl ".data/$name" .data/weights 2>/dev/null | tail -1 | cut -f1)
    echo "working tree with .whl, .data/$name and .data/weights: $(( (tracked + carried) >> 20 )) MiB of 64" ;;
  train)
    name=${2:?train NAME CONFIG OUT}; config=${3:?train NAME CONFIG OUT}; out=${4:?train NAME CONFIG OUT}; shift 4
    if [ -d .whl ]; then
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kerakp-site .whl/*.whl
      export PYTHONPATH=/tmp/kerakp-site
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=${KERAS_BACKEND:-jax}
    weights=(); for w in .data/weights/*.weights.h5; do [ -f "$w" ] && [[ "$(basename "$w")" == *"$(grep -m1 '^backbone:' "$config" | awk '{print $2}')"* ]] && weights=(--weights "$w"); done
    "$PYTHON" -m kerakp info
    "$PYTHON" -m kerakp train --config "$config" --data ".data/$name" --out "$out" "${weights[@]}" \
      --workers "${WORKERS:-14}" --set use_multiprocessing=true --set calibration_images=0 "$@" ;;
  *)
    sed -n '2,16p' "$0"; exit 2 ;;
esac
