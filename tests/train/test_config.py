"""Typed configs: YAML round trips, strict keys and types, shell overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from sciogen.config import (
    ConfigError,
    apply_overrides,
    config_to_yaml,
    from_dict,
    parse_override,
    save_config,
    to_dict,
)
from sciogen.registry import UnknownNameError, load_run_config
from sciogen.toy import ToyConfig, ToyModelConfig
from sciogen.train.config import DiffusionConfig, SamplingConfig, TrainConfig

REPO = Path(__file__).resolve().parents[2]
GMM_YAML = REPO / "domains" / "toy" / "gmm.yaml"


def test_round_trip_through_yaml_preserves_every_field():
    config = ToyConfig(
        model=ToyModelConfig(hidden=48, depth=2),
        diffusion=DiffusionConfig(schedule="cosine", prediction="x0"),
        train=TrainConfig(steps=7, betas=(0.8, 0.95), grad_clip=None, run_dir="runs/x"),
    )
    text = config_to_yaml(config)
    back = from_dict(ToyConfig, yaml.safe_load(text))
    assert back == config
    assert isinstance(back.train.betas, tuple)


def test_save_config_writes_loadable_yaml(tmp_path):
    path = save_config(ToyConfig(), tmp_path / "sub" / "config.yaml")
    assert from_dict(ToyConfig, yaml.safe_load(path.read_text())) == ToyConfig()


def test_unknown_key_names_the_key_and_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key train\.lrr; did you mean 'train\.lr'"):
        from_dict(ToyConfig, {"train": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown config key modle"):
        from_dict(ToyConfig, {"modle": {}})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"train": {"steps": "many"}}, r"train\.steps must be int"),
        ({"train": {"steps": 2.5}}, r"train\.steps must be int"),
        ({"train": {"progress": 1}}, r"train\.progress must be bool"),
        ({"train": {"betas": [0.9]}}, r"train\.betas must have 2 entries"),
        ({"train": {"decay": "exponential"}}, r"train\.decay must be one of 'cosine', 'linear', 'constant'"),
        ({"train": {"grad_clip": "big"}}, r"train\.grad_clip must be float or None"),
        ({"model": 3}, r"model must be a mapping"),
    ],
)
def test_badly_typed_values_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(ToyConfig, data)


def test_choices_are_checked_against_the_allowed_values():
    with pytest.raises(ValueError, match=r"diffusion\.prediction must be one of 'eps', 'x0', 'v', 'flow'; got 'score'"):
        DiffusionConfig(prediction="score")
    with pytest.raises(ValueError, match=r"sampling\.solver must be one of .*'dpm\+\+2m'.*got 'rk4'"):
        SamplingConfig(solver="rk4")
    with pytest.raises(ConfigError, match=r"train\.batch_size must be >= 1"):
        TrainConfig(batch_size=0)


def test_yaml_11_exponent_strings_are_read_as_floats():
    # PyYAML reads "1e-3" (no dot) as a string; a float field accepts it.
    config = from_dict(ToyConfig, yaml.safe_load("train: {lr: 1e-3}"))
    assert config.train.lr == pytest.approx(1e-3)


def test_overrides_set_nested_values_with_types():
    data = apply_overrides({"domain": "toy"}, ["train.lr=1e-4", "train.betas=[0.8, 0.9]", "model.hidden=64", "train.grad_clip=null"])
    config = from_dict(ToyConfig, data)
    assert config.train.lr == pytest.approx(1e-4)
    assert config.train.betas == (0.8, 0.9)
    assert config.model.hidden == 64
    assert config.train.grad_clip is None


def test_a_mistyped_override_is_an_error_naming_the_key():
    data = apply_overrides({"domain": "toy"}, ["train.stepz=5"])
    with pytest.raises(ConfigError, match=r"train\.stepz; did you mean 'train\.steps'"):
        from_dict(ToyConfig, data)
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        parse_override("train.steps")
    with pytest.raises(ConfigError, match="'lr' is a value, not a section"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=1"])


def test_load_run_config_reads_the_toy_recipe_with_overrides():
    config = load_run_config(GMM_YAML, ["train.steps=5"])
    assert isinstance(config, ToyConfig)
    assert config.train.steps == 5
    assert config.diffusion.prediction == "v"


def test_load_run_config_needs_a_known_domain(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {steps: 3}\n")
    with pytest.raises(ConfigError, match="has no 'domain' key; set it to one of: .*toy"):
        load_run_config(path)
    path.write_text("domain: potatoes\n")
    with pytest.raises(UnknownNameError, match="unknown domain 'potatoes'; registered domains: .*toy"):
        load_run_config(path)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_run_config(tmp_path / "absent.yaml")


def test_to_dict_is_plain_yaml():
    data = to_dict(ToyConfig())
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    assert [f.name for f in dataclasses.fields(ToyConfig)][:2] == ["domain", "train"]


def test_the_ground_floor_imports_nothing_above_it():
    """sciogen.config, sciogen._version and the dataset registry stand on no upper floor (issue 23)."""
    import subprocess
    import sys

    code = (
        "import sys, sciogen.config, sciogen._version, sciogen.data.registry\n"
        "above = [m for m in ('torch', 'sciogen.train', 'sciogen.train.config', 'sciogen.registry') if m in sys.modules]\n"
        "assert not above, above\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_old_import_place_still_works():
    import sciogen.config as ground
    import sciogen.train.config as old

    assert old.ConfigError is ground.ConfigError and old.from_dict is ground.from_dict


def test_flow_schedule_refuses_the_vp_velocity_at_config_time():
    from sciogen.train.config import ConfigError, DiffusionConfig

    assert DiffusionConfig(schedule="flow", prediction="flow").prediction == "flow"
    with pytest.raises(ConfigError, match="variance-preserving schedules only"):
        DiffusionConfig(schedule="flow", prediction="v")
