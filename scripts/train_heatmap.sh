#!/usr/bin/env bash
# Reproduce a shipped heatmap model, every stage in order, then its float16 TFLite export and its validation
# report:
#   scripts/train_heatmap.sh ytf68     # saved_models/ytf68_mobilenetv2_heatmap.keras, kerakp/presets/ytf68_...tflite
#   scripts/train_heatmap.sh 300w      # saved_models/300w_mobilenetv2_heatmap.keras, kerakp/presets/300w_...tflite
# Stage 1 (from ImageNet) runs here unless STAGE1=model.keras names one trained elsewhere (the shipped ones
# were trained on a GPU: scripts/gpu_train.sh, then kerakp fit-detector). On 2 CPU cores stage 1 takes
# 1-2 hours, each later stage 6-35 minutes. The ytf68 stages named mix300w also train on the 300-W photos
# their config names (../shared/data/300w_train). Stage 1's recipe is packaged (kerakp/recipes/), the later
# stages are the models' training history (training_history/). Settings: DATA, RUNS, OUT, TFLITE, WEIGHTS.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  ytf68) data=../shared/data/ytf68; stages="noflip 160 mix300w tune mix300w tune mix300w_192 tune_192 mix300w_unet tune_unet mix300w_occ tune_occ mix300w_wing tune_wing" ;;
  300w) data=../shared/data/300w_train; stages="192 192_more unet unet occ wing wing light upright upright" ;;
  *) echo "usage: scripts/train_heatmap.sh ytf68|300w" >&2; exit 2 ;;
esac
name=$1_mobilenetv2_heatmap
DATA=${DATA:-$data}
RUNS=${RUNS:-runs/$name}
OUT=${OUT:-saved_models/$name}
TFLITE=${TFLITE:-kerakp/presets/$name.tflite}
WEIGHTS=${WEIGHTS:-../shared/weights/mobilenetv2_1.0_imagenet_notop.weights.h5}

model=${STAGE1:-}
if [ -z "$model" ]; then
  kerakp train --config "kerakp/recipes/$name.yaml" --data "$DATA" --weights "$WEIGHTS" --out "$RUNS/stage1"
  model=$RUNS/stage1/model.keras
fi
n=1
for stage in $stages; do
  n=$((n + 1))
  kerakp train --config "training_history/${name}_$stage.yaml" --data "$DATA" --init "$model" --out "$RUNS/stage$n-$stage"
  model=$RUNS/stage$n-$stage/model.keras
done
cp "$model" "$OUT.keras"
kerakp export "$OUT.keras" --format tflite --quantize float16 --calibration "$DATA" --out "$TFLITE" --overwrite
kerakp evaluate "$TFLITE" --data "$DATA" --subset val --out "$RUNS/eval" --overwrite
