"""Typed configuration: presets load, values are validated, errors name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import (
    MODEL_LADDER,
    ConfigError,
    DataBudget,
    RealCorpusConfig,
    SweepConfig,
    SyntheticCorpusConfig,
    TrialConfig,
    config_hash,
    from_dict,
    load_config,
    repo_configs_dir,
    with_overrides,
)

PRESET_TYPES = {"corpus": SyntheticCorpusConfig, "sweeps": SweepConfig, "trials": TrialConfig}


def all_presets() -> list[Path]:
    return sorted(repo_configs_dir().rglob("*.yaml"))


def test_there_are_presets_for_every_config_folder():
    folders = {p.parent.name for p in all_presets()}
    assert folders == set(PRESET_TYPES), f"unexpected preset folders: {folders}"
    assert {"default.yaml", "smoke.yaml"} <= {
        p.name for p in (repo_configs_dir() / "corpus").iterdir()
    }


@pytest.mark.parametrize("path", all_presets(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_preset_loads_into_its_typed_config(path: Path):
    config = load_config(PRESET_TYPES[path.parent.name], path)
    if isinstance(config, SweepConfig):
        trials = config.trials()
        assert trials, "a sweep preset must expand to at least one trial"
        assert len({t.name for t in trials}) == len(trials), "trial names must be unique"


def test_trial_round_trips_through_a_plain_dict():
    sweep = SweepConfig(name="rt")
    for trial in sweep.trials():
        data = json.loads(json.dumps(trial.to_dict()))  # what a Ray worker receives
        assert TrialConfig.from_dict(data) == trial
        assert config_hash(TrialConfig.from_dict(data)) == config_hash(trial)


def test_trial_names_are_deterministic_and_readable():
    a = SweepConfig(name="x").trials()
    b = SweepConfig(name="x").trials()
    assert [t.name for t in a] == [t.name for t in b]
    assert a[0].name == "baseline-u256-seed0"
    assert a[1].name == "s-u256-seed0"


def test_hours_budget_label():
    assert DataBudget(hours=0.5).label == "h0.5"
    assert DataBudget(utterances=1024).label == "u1024"


def test_grid_expansion_covers_sizes_budgets_seeds_and_baseline():
    sweep = from_dict(
        SweepConfig,
        {
            "name": "g",
            "grid": {
                "model_sizes": ["s", "l"],
                "seeds": [0, 1],
                "baseline": True,
                "data_budgets": [{"utterances": 64}, {"hours": 0.1}],
            },
        },
    )
    trials = sweep.trials()
    assert len(trials) == 2 * 2 * (2 + 1)
    kinds = {(t.kind, t.model.size if t.kind == "neural" else None) for t in trials}
    assert kinds == {("baseline", None), ("neural", "s"), ("neural", "l")}
    assert {t.model for t in trials if t.kind == "neural"} == {MODEL_LADDER["s"], MODEL_LADDER["l"]}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("yaml_text", "key", "problem"),
    [
        ("name: x\ngrid:\n  model_size: [s]\n", "grid.model_size", "unknown key"),
        ("name: x\ngrid:\n  seeds: []\n", "grid", "seeds is empty"),
        ("name: x\ngrid:\n  model_sizes: []\n", "grid", "model_sizes is empty"),
        (
            "name: x\ngrid:\n  data_budgets: [{utterances: -5}]\n",
            "grid.data_budgets.0.utterances",
            "greater than 0",
        ),
        ("name: x\ntrial:\n  optim:\n    lr: fast\n", "trial.optim.lr", "valid number"),
        (
            "name: x\ntrial:\n  training:\n    batch_size: '16'\n",
            "trial.training.batch_size",
            "valid integer",
        ),
        (
            "name: x\ntrial:\n  deepspeed:\n    zero_stage: 4\n",
            "trial.deepspeed.zero_stage",
            "less than or equal to 3",
        ),
        (
            "name: x\ntrial:\n  resources:\n    num_workers: 0\n",
            "trial.resources.num_workers",
            "greater than 0",
        ),
        ("grid: {}\n", "name", "required key is missing"),
    ],
)
def test_bad_sweep_values_name_the_file_and_key(tmp_path, yaml_text, key, problem):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(SweepConfig, path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}:"), message
    assert problem in message


def test_heldout_fraction_of_one_or_more_is_rejected(tmp_path):
    path = write(tmp_path, "layout: vctk\nsource: /data/vctk\nheldout_fraction: 1.0\n")
    with pytest.raises(ConfigError, match=r"preset.yaml: heldout_fraction: .*less than 1"):
        load_config(RealCorpusConfig, path)


def test_corpus_config_cross_field_checks(tmp_path):
    path = write(tmp_path, "train_speakers: 4\nmin_speakers_per_budget: 8\n")
    with pytest.raises(ConfigError, match=r"min_speakers_per_budget .* must be <= train_speakers"):
        load_config(SyntheticCorpusConfig, path)


def test_yaml_problems_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"invalid YAML"):
        load_config(SweepConfig, write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"expected a mapping"):
        load_config(SweepConfig, write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match=r"cannot read config"):
        load_config(SweepConfig, tmp_path / "absent.yaml")


def test_scientific_notation_reads_as_a_number(tmp_path):
    sweep = load_config(SweepConfig, write(tmp_path, "name: x\ntrial:\n  optim:\n    lr: 3e-4\n"))
    assert sweep.trial.optim.lr == pytest.approx(3e-4)


def test_overrides_are_validated():
    trial = SweepConfig(name="o").trials()[1]
    changed = with_overrides(trial, ["optim.lr=2e-3", "training.steps=10"])
    assert changed.optim.lr == pytest.approx(2e-3) and changed.training.steps == 10
    with pytest.raises(ConfigError, match=r"--set: training.steps: Input should be greater"):
        with_overrides(trial, ["training.steps=0"])
    with pytest.raises(ConfigError, match=r"expected key=value"):
        with_overrides(trial, ["training.steps"])
    with pytest.raises(ConfigError, match=r"unknown key"):
        with_overrides(trial, ["training.stepz=3"])


def test_configs_are_frozen():
    trial = TrialConfig()
    with pytest.raises(AttributeError):
        trial.seed = 3  # type: ignore[misc]
