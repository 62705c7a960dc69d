"""Training recipes: YAML over the defaults, `base:` chains, one clear line for a bad recipe."""
import re
from pathlib import Path

import pytest

from kerakp.config import CHOICES, load_config, recipes
from kerakp.errors import KerakpError

CONFIGS = Path(__file__).resolve().parents[1] / "training_history"


def test_every_recipe_loads_the_packaged_ones_by_name():
    history = sorted(CONFIGS.glob("*.yaml"))
    assert len(history) > 10 and len(recipes()) >= 6 and "emotion" not in recipes()   # emotion: a tag rule
    for recipe in [*history, *recipes().values()]:
        load_config(recipe)
    assert load_config("300w_mobilenetv2_heatmap") == load_config(recipes()["300w_mobilenetv2_heatmap"])
    assert load_config("quickstart.yaml").backbone == "simplecnn"
    with pytest.raises(KerakpError, match="nosuch: config file not found \\(packaged recipes: 300w_fast, 300w_fast_wide, 300w_mobilenetv2, "):
        load_config("nosuch")


def test_a_based_recipe_is_its_base_with_its_own_keys_changed():
    tune, tune_192 = load_config(CONFIGS / "ytf68_mobilenetv2_heatmap_tune.yaml"), load_config(
        CONFIGS / "ytf68_mobilenetv2_heatmap_tune_192.yaml")
    assert tune_192.input_size == 192 and {**tune.to_dict(), "input_size": 192} == tune_192.to_dict()
    assert load_config(CONFIGS / "ytf68_mobilenetv2_heatmap_mix300w_192.yaml").extra_data == ["../shared/data/300w_train"]


def test_base_keys_merge_augment_and_yield_to_overrides(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "root.yaml").write_text("epochs: 7\nbatch_size: 8\naugment:\n  flip: 0.0\n  rotation: 5.0\n")
    (tmp_path / "child.yaml").write_text("base: sub/root.yaml\nepochs: 9\naugment:\n  rotation: 25.0\n")
    config = load_config(tmp_path / "child.yaml", {"batch_size": 4})
    assert (config.epochs, config.batch_size, config.augment["flip"], config.augment["rotation"]) == (9, 4, 0.0, 25.0)


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "base: missing.yaml\n"}, "missing.yaml: config file not found (the base of"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, "b.yaml: config key 'base': a.yaml is already in this chain of bases (a loop)"),
    ({"a.yaml": "base: [b.yaml]\n"}, "config key 'base': expected a recipe file name"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "epochz: 3\n"}, "unknown config key 'epochz'"),
])
def test_a_bad_base_gets_one_clear_line(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(KerakpError, match=re.escape(message)):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("key, value", [("loss", "hinge"), ("head", "dense"), ("face_box", "body")])
def test_a_value_outside_a_keys_choices_is_refused_when_the_recipe_loads(key, value):
    with pytest.raises(KerakpError, match=re.escape(f"config key '{key}': expected one of {', '.join(CHOICES[key])}, got '{value}'")):
        load_config(None, {key: value})


def test_upright_crops_need_a_face_to_turn():
    with pytest.raises(KerakpError, match=re.escape("config key 'upright': needs face_box: landmarks")):
        load_config(None, {"upright": True, "face_box": "image"})
    assert load_config(None, {"upright": True}).upright


def test_the_command_line_offers_the_recipes_choices():
    from kerakp.cli.models import train
    offered = {p.name: tuple(p.type.choices) for p in train.params if p.name in CHOICES}
    assert offered == {key: tuple(c for c in CHOICES[key] if c) for key in offered}   # "": the default, not an option
    assert {"loss", "head", "backbone", "precision", "distribute"} <= set(offered)


def test_the_command_line_loads_no_keras_until_a_command_needs_it():
    """The choices come from kerakp's tables, which load no Keras, so `kerakp --help` stays quick."""
    import subprocess
    import sys
    code = "import sys, kerakp.cli; print(sorted({'keras', 'tensorflow'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
