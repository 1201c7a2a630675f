"""Config validation: presets resolve, layers override in order, typos and bad values are clear ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pneumoscope.errors import ConfigError
from pneumoscope.training.config import (
    TrainConfig,
    config_to_yaml,
    load_run_config,
    override_notes,
    parse_override,
    resolve_config,
    save_config,
)
from pneumoscope.training.presets import preset_names, preset_values


def write_yaml(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


STUDY_CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "generalisation"


def test_default_is_recommended_preset_standardised_with_framing_jitter():
    config, standardised = resolve_config(), resolve_config(preset="standardised")
    plain = resolve_config(preset="plain")
    assert config.preset == "recommended"
    assert config.model.standardize is True and standardised.model.standardize is True
    assert standardised.augment == plain.augment and config.optim == plain.optim and config.balance == plain.balance
    assert config.augment.crop_scale == (0.85, 1.0) and config.augment.scale == (0.75, 1.15)
    assert config.augment.hflip is False and config.augment.vflip is False


def test_recommended_is_the_recipe_the_generalisation_study_chose():
    chosen = resolve_config(STUDY_CONFIGS / "framing.yaml")
    assert chosen.preset == "standardised"  # the study's candidates are written over the recipe they were compared to
    assert resolve_config().model_dump(exclude={"preset"}) == chosen.model_dump(exclude={"preset"})


def test_strong_preset_is_the_photometric_and_geometric_recipe():
    strong = resolve_config(preset="strong")
    assert strong.model.standardize is True
    assert strong.augment.gamma == (0.7, 1.5) and strong.augment.blur_p > 0 and strong.augment.resolution_p > 0
    assert strong.augment.crop_scale is not None and strong.augment.rotation == 15.0


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves(name):
    config = resolve_config(preset=name)
    assert config.preset == name
    for section, values in preset_values(name).items():
        for key, value in values.items():
            got = getattr(getattr(config, section), key)
            assert (list(got) if isinstance(got, tuple) else got) == value


def test_plain_preset_is_the_plain_recipe():
    plain = resolve_config(preset="plain")
    assert plain.model.standardize is False
    assert plain.augment.gamma is None and plain.augment.blur_p == 0 and plain.augment.crop_scale is None
    assert plain.augment.rotation > 0 and plain.augment.shift > 0 and plain.augment.brightness > 0
    assert plain.balance.method == "class_weights"


def test_layers_override_in_order(tmp_path):
    path = write_yaml(tmp_path, {"preset": "plain", "optim": {"lr": 0.01}, "trainer": {"epochs": 7}})
    config = resolve_config(path, overrides={"trainer": {"epochs": 3}})
    assert config.preset == "plain"          # from the file
    assert config.optim.lr == 0.01           # file over preset
    assert config.trainer.epochs == 3        # override over file
    assert resolve_config(path, preset="recommended").preset == "recommended"  # --preset over the file's key


def test_settings_of_the_file_that_the_command_line_replaces_are_announced(tmp_path):
    path = write_yaml(tmp_path, {"preset": "plain", "optim": {"lr": 0.01}, "trainer": {"epochs": 7, "batch_size": 16},
                                 "data": {"paths": ["a", "b"]}})
    overrides = {"trainer": {"epochs": 3, "batch_size": 16}, "data": {"paths": ["c"]}, "seed": 5}
    config = resolve_config(path, overrides=overrides, preset="strong")
    assert config.trainer.epochs == 3 and config.preset == "strong"
    assert override_notes(path, overrides, "strong") == [
        f"note: trainer.epochs is 7 in {path} and 3 on the command line; the command line's value is used.",
        f"note: data.paths is [a, b] in {path} and [c] on the command line; the command line's value is used.",
        f"note: preset is plain in {path} and strong on the command line; the command line's value is used.",
    ]  # the same value twice (batch_size) and keys the file does not set (seed) are not worth a note
    assert override_notes(path, {"optim": {"lr": 0.01}}) == [] and override_notes(None, overrides, "strong") == []


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = write_yaml(tmp_path, {"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError) as info:
        resolve_config(path)
    text = str(info.value)
    assert "optim.lrr" in text and str(path) in text and "'lr'" in text


def test_unknown_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="trainr"):
        resolve_config(write_yaml(tmp_path, {"trainr": {"epochs": 2}}))


@pytest.mark.parametrize("values, key", [
    ({"optim": {"optimizer": "rmsprop"}}, "optim.optimizer"),
    ({"trainer": {"epochs": 0}}, "trainer.epochs"),
    ({"task": "5class"}, "task"),
    ({"augment": {"gamma": [1.5, 0.7]}}, "augment"),
    ({"data": {"num_workers": -1}}, "data.num_workers"),
])
def test_bad_values_name_the_key(tmp_path, values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        resolve_config(write_yaml(tmp_path, values))


def test_two_stage_needs_a_second_stage():
    with pytest.raises(ConfigError, match="stage1_epochs"):
        resolve_config(overrides={"strategy": {"kind": "two_stage", "stage1_epochs": 3}, "trainer": {"epochs": 3}})


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="YAML"):
        resolve_config(write_yaml(tmp_path, "optim: [lr: 1\n"))
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config(write_yaml(tmp_path, "- a\n- b\n"))


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="recommended"):
        resolve_config(preset="recomended")


def test_parse_override_reads_yaml_values():
    assert parse_override("optim.lr=3e-4") == {"optim": {"lr": 3e-4}}
    assert parse_override("augment.gamma=[0.8, 1.2]") == {"augment": {"gamma": [0.8, 1.2]}}
    with pytest.raises(ConfigError):
        parse_override("no-equals")


@pytest.mark.parametrize("text, expected", [("32", "32"), ("16", "16"), ("bf16", "bf16")])
def test_precision_override_as_typed_on_the_command_line(text, expected):
    """``--set trainer.precision=32``: YAML reads 32 as a number; it must still select fp32."""
    assert resolve_config(overrides=parse_override(f"trainer.precision={text}")).trainer.precision == expected
    with pytest.raises(ConfigError):
        resolve_config(overrides=parse_override("trainer.precision=64"))


def test_saved_config_repeats_the_run(tmp_path):
    config = resolve_config(preset="plain", overrides={"trainer": {"epochs": 4}, "data": {"paths": ["/x"]}})
    save_config(config, tmp_path / "config.yaml")
    again = resolve_config(tmp_path / "config.yaml")
    assert again == config
    assert load_run_config(tmp_path) == config
    assert isinstance(yaml.safe_load(config_to_yaml(config)), dict)


def test_model_is_strict_about_types():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TrainConfig.model_validate({"trainer": {"batch_size": "many"}})
