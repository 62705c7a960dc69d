"""Training recipes: a YAML file of `TrainConfig` keys, overridden by command-line options and `--set KEY=VALUE`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from kerakp.data.augment import Augment
from kerakp.detect import DETECTORS
from kerakp.errors import KerakpError
from kerakp.models.backbones import BACKBONES
from kerakp.models.heads import HEADS
from kerakp.models.losses import LOSSES

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("", "data-parallel")
CHOICES = {"face_box": ("landmarks", "image"), "backbone": tuple(BACKBONES), "head": tuple(HEADS), "loss": tuple(LOSSES),
           "precision": PRECISIONS, "distribute": DISTRIBUTIONS}   # keys with a fixed set of values
RANGES = {   # numeric keys: (lowest, highest, whether the lowest itself is allowed)
    "input_size": (32, 1024, True), "head_units": (1, 1 << 16, True), "dropout": (0.0, 0.999, True),
    "huber_delta": (0.0, 1.0, False), "epochs": (1, 100_000, True), "batch_size": (1, 65_536, True),
    "learning_rate": (0.0, 10.0, False), "weight_decay": (0.0, 1.0, True), "warmup_epochs": (0, 100_000, True),
    "clipnorm": (0.0, 1e6, False), "patience": (1, 100_000, True), "val_fraction": (0.0, 0.9, True),
    "crop_scale": (0.0, 10.0, False), "workers": (1, 256, True), "calibration_images": (0, 1_000_000, True),
    "cache_mb": (0, 1 << 20, True), "decode_window": (0, 64, True), "heatmap_spread": (0.0, 64.0, True),
    "heatmap_weight": (0.0, 100.0, True), "loss_along": (0.0, 1.0, True),
    "width": (0.0, 4.0, False), "backbone_stride": (4, 32, True),
    "teacher_weight": (0.0, 1.0, True), "teacher_turn": (0.0, 45.0, True), "extra_share": (0.0, 0.99, True), "heatmap_stride": (1, 64, True),
}
POWERS_OF_TWO = ("backbone_stride", "heatmap_stride")


@dataclass
class TrainConfig:
    """Every knob of `kerakp train`; the YAML recipes (kerakp/recipes/, `recipes()`) set a subset of these."""

    backbone: str = "mobilenetv2"
    weights: str = "none"            # none | imagenet | path of a local weights file
    init: str = ""                   # a trained .keras model to start from where layer names and shapes match
    freeze_bn: bool = False          # keep BatchNorm in inference mode (else it trains with momentum 0.9)
    width: float = 1.0               # the backbone's channel multiplier (MobileNetV2's alpha)
    backbone_stride: int = 32        # cut the backbone at its deepest map of this stride (16: a compact student)
    input_size: int = 128
    head: str = "regression"         # regression | heatmap | unet (heatmap with skips) | light (a student's); models.heads
    head_units: int = 256
    heatmap_stride: int = 4          # heatmap heads: input side / heatmap side
    dropout: float = 0.2
    loss: str = "huber"              # huber | mse | wing
    decode_window: int = 0           # heatmap heads: 0 soft-argmax over the whole map | r: over (2r+1)^2 cells at the peak
    heatmap_spread: float = 0.0      # heatmap heads: sd (cells) of the Gaussian the shape term pulls each map toward
    heatmap_weight: float = 0.0      # heatmap heads: the shape term's weight beside the coordinate loss (0: off)
    huber_delta: float = 0.01        # in crop fractions (0.01 = 1.3 px at 128 px)
    loss_along: float = 1.0          # weight of a contour point's error along its line (jaw, brows, nose bridge); 1: none
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    clipnorm: float = 1.0
    patience: int = 8                # EarlyStopping on val_loss; restores the best weights
    val_fraction: float = 0.15       # person-wise validation split
    seed: int = 0                    # the person split, augmentation, initial weights and dropout
    crop_scale: float = 1.25         # crop side / landmark-box side
    face_box: str = "landmarks"      # landmarks: crop around the face | image: the whole image (faces that fill it)
    upright: bool = False            # turn crops so the outer eye corners lie level (by the labels; at inference the last pass's)
    markup: str = ""                 # train on this markup, converted from the data's (for example nose_tip)
    extra_data: list = field(default_factory=list)  # more labelled sets (paths) to train on; never validated on
    extra_share: float = 0.0         # the extra sets' share of each epoch, their faces drawn afresh each epoch (0: all, every epoch)
    split_extra: bool = False        # hold out each extra set's validation share (same fraction and seed), never trained on
    teacher: str = ""                # a model (or preset) that reads every training crop: the targets (distillation)
    teacher_weight: float = 0.5      # how far each label moves toward the teacher's reading of the crop (0..1)
    teacher_turn: float = 0.0        # degrees: the teacher also reads each crop turned this far each way, and averages (0: off)
    unlabelled: list = field(default_factory=list)  # images or folders the teacher labels alone (distillation)
    workers: int = 1                 # data-loading threads (processes with use_multiprocessing) beside the model
    use_multiprocessing: bool = False
    cache_mb: int = 2048             # decoded images kept between epochs (per process), least recently used dropped
    precision: str = "float32"       # float32 | mixed_float16 | mixed_bfloat16 (Keras dtype policies; heads stay float32)
    distribute: str = ""             # "" (one device) | data-parallel (every local device; JAX or TensorFlow)
    calibration_images: int = 300    # training images used to fit the detector-box calibrations and point offsets
    detector: str = ""               # the face detector whose box calibration to fit ("": every detector)
    tensorboard: bool = False
    augment: dict = field(default_factory=lambda: Augment().to_dict())

    def to_dict(self) -> dict:
        return asdict(self)


def parse_value(text: str):
    """A `--set` value: YAML scalars (numbers, true/false, null, lists) or a plain string."""
    return yaml.safe_load(text) if text != "" else ""


def overrides_from(options: dict, sets=()) -> dict:
    """Recipe overrides from named options (None: not given) and `KEY=VALUE` texts (`--set`)."""
    overrides = {k: v for k, v in options.items() if v is not None}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KerakpError(f"--set expects KEY=VALUE, got '{item}'")
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def apply_overrides(values: dict, overrides: dict) -> dict:
    """Set dotted keys (`augment.rotation`) into a nested dict, refusing unknown ones."""
    values = {**values, "augment": dict(values.get("augment", {}))}
    known_augment = set(Augment().to_dict())
    for key, value in overrides.items():
        if value is None:
            continue
        head, _, sub = key.partition(".")
        if head == "augment" and sub:
            if sub not in known_augment:
                raise KerakpError(f"unknown augment key '{sub}' (known: {', '.join(sorted(known_augment))})")
            values["augment"][sub] = value
        elif head in {f.name for f in fields(TrainConfig)} and not sub:
            values[head] = value
        else:
            raise KerakpError(f"unknown config key '{key}' (known: {', '.join(f.name for f in fields(TrainConfig))})")
    return values


def recipes() -> dict[str, Path]:
    """The recipes packaged with kerakp (kerakp/recipes/), by name: `--config NAME` finds them."""
    from importlib import resources

    folder = Path(str(resources.files("kerakp") / "recipes"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if not p.stem.startswith("emotion")}


def recipe_path(name, near: Path | None = None) -> Path:
    """A recipe file: the path as given (relative to `near`, a recipe naming its base), else the packaged
    recipe of that name (with or without `.yaml`)."""
    path = (near / name) if near is not None else Path(name)
    packaged = recipes().get(Path(str(name)).stem if str(name).endswith(".yaml") else str(name))
    return path if path.is_file() or packaged is None or len(Path(str(name)).parts) > 1 else packaged


def read_recipe(path: Path, children: tuple = ()) -> dict:
    """A YAML recipe's keys, flattened (`augment.rotation`); a `base:` key names another recipe (relative to
    this one's folder, or a packaged one) whose keys this one starts from and changes."""
    if not path.is_file():
        raise KerakpError(f"{path}: config file not found" + (f" (the base of {children[-1]})" if children
                          else f" (packaged recipes: {', '.join(recipes())})"))
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise KerakpError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise KerakpError(f"{path}: expected a mapping of config keys")
    flat = {}
    if "base" in loaded:
        base = loaded.pop("base")
        if not isinstance(base, str):
            raise KerakpError(f"{path}: config key 'base': expected a recipe file name, got {base!r}")
        base_path = recipe_path(base, path.parent)
        if base_path.resolve() in [p.resolve() for p in (*children, path)]:
            raise KerakpError(f"{path}: config key 'base': {base} is already in this chain of bases (a loop)")
        flat = read_recipe(base_path, (*children, path))
    flat.update({k: v for k, v in loaded.items() if k != "augment"})
    flat.update({f"augment.{k}": v for k, v in (loaded.get("augment") or {}).items()})
    return flat


def load_config(path=None, overrides: dict | None = None) -> TrainConfig:
    """Defaults <- YAML recipe (and the recipes it is based on) <- overrides; unknown keys and wrong types get
    one clear line."""
    values = TrainConfig().to_dict()
    if path is not None:
        values = apply_overrides(values, read_recipe(recipe_path(path)))
    values = apply_overrides(values, overrides or {})
    config = TrainConfig(**values)
    for key, allowed in CHOICES.items():
        if getattr(config, key) not in allowed:
            raise KerakpError(f"config key '{key}': expected one of {', '.join(allowed)}, got {getattr(config, key)!r}")
    for key in ("extra_data", "unlabelled"):
        paths = [getattr(config, key)] if isinstance(getattr(config, key), str) else getattr(config, key)
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise KerakpError(f"config key '{key}': expected a list of paths, got {getattr(config, key)!r}")
        setattr(config, key, paths)
    for f in fields(TrainConfig):
        value, default = getattr(config, f.name), getattr(TrainConfig(), f.name)
        if isinstance(default, bool) and not isinstance(value, bool) \
                or isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(value, (int, float)) \
                or isinstance(default, str) and not isinstance(value, str):
            raise KerakpError(f"config key '{f.name}': expected {type(default).__name__}, got {value!r}")
    for key, value in config.augment.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KerakpError(f"config key 'augment.{key}': expected a number, got {value!r}")
    for f in fields(TrainConfig):
        if type(getattr(TrainConfig(), f.name)) is int:
            if float(getattr(config, f.name)) != int(getattr(config, f.name)):
                raise KerakpError(f"config key '{f.name}': expected a whole number, got {getattr(config, f.name)!r}")
            setattr(config, f.name, int(getattr(config, f.name)))
    for key, (low, high, closed) in RANGES.items():
        value = getattr(config, key)
        if not (low <= value if closed else low < value) or not value <= high or value != value:
            raise KerakpError(f"config key '{key}': expected a value from {low}{'' if closed else ' (excluded)'} "
                              f"to {high}, got {value!r}")
    for key in POWERS_OF_TWO:
        if getattr(config, key) & (getattr(config, key) - 1):
            raise KerakpError(f"config key '{key}': expected a power of two, got {getattr(config, key)}")
    if config.detector and config.detector not in DETECTORS:
        raise KerakpError(f"unknown detector '{config.detector}' (known: {', '.join(DETECTORS)})")
    if config.unlabelled and not config.teacher:
        raise KerakpError("config key 'unlabelled': needs a teacher to label those images")
    if config.upright and config.face_box == "image":
        raise KerakpError("config key 'upright': needs face_box: landmarks (a whole-image crop is read as it is)")
    return config
