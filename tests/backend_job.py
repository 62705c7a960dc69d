"""Run one Keras-backend job in a fresh process (the backend is fixed at import): `python backend_job.py MODE ...`.

- `train OUT_DIR DATA_CSV`: build a small model, take a training step (eagerly on TensorFlow, where tracing
  costs far more than the step; JAX compiles each op it runs eagerly, so there the step is traced), save
  `model.keras` and its predictions on fixed crops (`crops.npz`);
- `predict MODEL CROPS_NPZ OUT_NPZ`: load a saved model and predict the same crops;
- `cli-train DATA_CSV OUT_DIR`: run `kerakp train` for one epoch.
With `--no-tensorflow` first, importing TensorFlow raises, as on a machine where it is not installed.
"""
import sys


class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked: this job must run without TensorFlow")
        return None


def main(args: list[str]) -> None:
    if args[0] == "--no-tensorflow":
        sys.meta_path.insert(0, BlockTensorFlow())
        args = args[1:]
    mode, *rest = args
    import keras
    import numpy as np

    from kerakp.data.formats import load_dataset
    from kerakp.data.sequence import KeypointSequence
    from kerakp.model_info import CropRule
    from kerakp.models.custom import MaskedKeypointLoss
    from kerakp.models.landmark_model import LandmarkModel

    if mode == "train":
        out, data_csv = rest
        keras.utils.set_random_seed(0)
        crops, targets = KeypointSequence(load_dataset(data_csv), CropRule(32), batch_size=8)[0]
        model = LandmarkModel("mobilenetv2", "ibug68", 32, head_units=16)
        model.compile(keras.optimizers.AdamW(1e-3), MaskedKeypointLoss("huber"),
                      run_eagerly=keras.backend.backend() == "tensorflow")
        loss = model.train_on_batch(crops, targets)
        model.save(f"{out}/model.keras")
        np.savez(f"{out}/crops.npz", crops=crops, predictions=np.asarray(model.predict_on_batch(crops)), loss=loss)
    elif mode == "predict":
        model_path, crops_npz, out_npz = rest
        model = keras.models.load_model(model_path, compile=False)
        np.savez(out_npz, predictions=np.asarray(model.predict_on_batch(np.load(crops_npz)["crops"])))
    elif mode == "cli-train":
        data_csv, out = rest
        from kerakp.cli import main as kerakp

        kerakp(["train", "--data", data_csv, "--out", out, "--backbone", "simplecnn", "--input-size", "32",
                "--epochs", "1", "--batch-size", "16", "--set", "calibration_images=10"], standalone_mode=False)
    print("backend", keras.backend.backend(), "tensorflow imported:", "tensorflow" in sys.modules)


if __name__ == "__main__":
    main(sys.argv[1:])
