"""Typed configuration: presets load, values are validated, errors name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import (
    MODEL_LADDER,
    ConfigError,
    DataBudget,
    ModelConfig,
    RealCorpusConfig,
    SweepConfig,
    SweepGrid,
    SyntheticCorpusConfig,
    TrainingConfig,
    TrialConfig,
    config_hash,
    from_dict,
    load_config,
    replace,
    repo_configs_dir,
    to_dict,
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


def test_the_baselines_axis_adds_a_concat_family_and_keeps_ridge_as_it_was():
    sweep = from_dict(
        SweepConfig,
        {
            "name": "b",
            "grid": {
                "model_sizes": ["s"],
                "data_budgets": [{"utterances": 64}],
                "baselines": ["ridge", "concatenative"],
            },
            "resources_by_size": {"baseline": {"cpus_per_worker": 2.0}},
        },
    )
    trials = sweep.trials()
    assert [t.name for t in trials] == ["baseline-u64-seed0", "concat-u64-seed0", "s-u64-seed0"]
    assert [t.baseline for t in trials[:2]] == ["ridge", "concatenative"]
    assert {t.kind for t in trials[:2]} == {"baseline"}
    # The two methods share the baseline's resources unless "concat" has its own.
    assert [t.resources.cpus_per_worker for t in trials] == [2.0, 2.0, 1.0]
    # Ridge at its default is written as before (no `baseline` key: same config_hash); the
    # concatenative trial round-trips with its method.
    assert "baseline" not in trials[0].to_dict()
    assert trials[1].to_dict()["baseline"] == "concatenative"
    for trial in trials:
        data = json.loads(json.dumps(trial.to_dict()))
        assert TrialConfig.from_dict(data) == trial
    assert "baselines" not in to_dict(SweepConfig(name="b").grid)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "name: x\ngrid: {baselines: [ridge, unit]}\n",
            "grid.baselines.1: Input should be 'ridge' or 'concatenative'",
        ),
        (
            "name: x\ngrid: {baselines: [ridge, ridge]}\n",
            "grid.baselines: has repeated entries: ['ridge', 'ridge']",
        ),
        ("name: x\ngrid: {baselines: []}\n", "grid.baselines: is empty while baseline is true"),
    ],
)
def test_bad_baselines_name_the_key(tmp_path, yaml_text, expected):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(SweepConfig, path)
    assert str(err.value).startswith(f"{path}: {expected}"), str(err.value)


def test_a_baseline_method_needs_kind_baseline(tmp_path):
    path = write(tmp_path, "baseline: concatenative\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrialConfig, path)
    assert str(err.value).startswith(f"{path}: baseline: 'concatenative' is a traditional method")
    with pytest.raises(ConfigError, match=r"baseline: Input should be 'ridge' or 'concatenative'"):
        load_config(TrialConfig, write(tmp_path, "kind: baseline\nbaseline: svm\n"))
    concat = load_config(TrialConfig, write(tmp_path, "kind: baseline\nbaseline: concatenative\n"))
    assert concat.family == "concat" and concat.name == "concat-u1024-seed0"
    no_baseline = SweepConfig(name="x", grid=SweepGrid(baseline=False, baselines=()))
    assert {t.kind for t in no_baseline.trials()} == {"neural"}


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


# ---------------------------------------------------------------------------------------------
# Rules across fields: each error names the file and the key


# Results rows carry config_hash; a change here orphans every runs/ directory of these sweeps.
# Last changed on purpose: EvalConfig's judge/vocoder/cache fields and DeepSpeedConfig's
# zero3_param_persistence_threshold (the real-path issue). The concat-* trials were added with
# the concatenative baseline; `TrialConfig.baseline` left every earlier hash as it was. The
# default sweep's grid and protocol changed on purpose (issue 14: converged protocol, seven
# budgets, two seeds, two baselines); the protocol fields left every other hash as it was.
PINNED_HASHES = {
    "smoke": {
        "baseline-u64-seed0": "1f18d2b01f5f",
        "xs-u64-seed0": "02a6af05d89a",
        "s-u64-seed0": "40dca9905d4c",
        "baseline-u256-seed0": "ae33d2d4177e",
        "xs-u256-seed0": "30b238c7afe8",
        "s-u256-seed0": "d7d19dc9a1fe",
    },
    "default": {
        "baseline-u32-seed0": "cea008c064c3",
        "concat-u32-seed0": "19fac5bb9b20",
        "s-u32-seed0": "643abad36e42",
        "m-u32-seed0": "1708b4e6013a",
        "l-u32-seed0": "b5aeedf9e6eb",
        "baseline-u32-seed1": "a369de5f7f30",
        "concat-u32-seed1": "c5091874c3d9",
        "s-u32-seed1": "fbbecf39704a",
        "m-u32-seed1": "7fe67f0fce70",
        "l-u32-seed1": "ef6f90f8f8c3",
        "baseline-u64-seed0": "03a8a76c0069",
        "concat-u64-seed0": "54f95c0b518e",
        "s-u64-seed0": "fc816b410000",
        "m-u64-seed0": "2f229b6e5975",
        "l-u64-seed0": "d0b201ade29e",
        "baseline-u64-seed1": "644dd569837e",
        "concat-u64-seed1": "5f8cbedd4f78",
        "s-u64-seed1": "73de60931833",
        "m-u64-seed1": "c7341c0af1ad",
        "l-u64-seed1": "84c904ca852a",
        "baseline-u128-seed0": "28beb19fe2dc",
        "concat-u128-seed0": "a20081052656",
        "s-u128-seed0": "cb3ea10e6229",
        "m-u128-seed0": "a776d1ff6108",
        "l-u128-seed0": "867da4e287e4",
        "baseline-u128-seed1": "7de804fc050b",
        "concat-u128-seed1": "fb5edc5c717c",
        "s-u128-seed1": "7416322d62cf",
        "m-u128-seed1": "aec30cd7f5eb",
        "l-u128-seed1": "ff03d5ba3758",
        "baseline-u256-seed0": "61ff5046ea40",
        "concat-u256-seed0": "67e699a1f02c",
        "s-u256-seed0": "23c268719196",
        "m-u256-seed0": "5f263456317e",
        "l-u256-seed0": "a2f4490b7dd9",
        "baseline-u256-seed1": "65690754db3c",
        "concat-u256-seed1": "00e10f932f9f",
        "s-u256-seed1": "f311f718f41f",
        "m-u256-seed1": "e2cfb95cd6df",
        "l-u256-seed1": "8e7560d818da",
        "baseline-u512-seed0": "b7244467da6a",
        "concat-u512-seed0": "a6f4b4ed3496",
        "s-u512-seed0": "0d165485aad6",
        "m-u512-seed0": "682cfff21430",
        "l-u512-seed0": "3a3663c9aeb4",
        "baseline-u512-seed1": "b42c94588026",
        "concat-u512-seed1": "b0d90462073c",
        "s-u512-seed1": "90af6bf76a77",
        "m-u512-seed1": "9d7d51b2e121",
        "l-u512-seed1": "406bf3e66a9a",
        "baseline-u1024-seed0": "5d3e44940450",
        "concat-u1024-seed0": "ead48f1302da",
        "s-u1024-seed0": "fcfeb2dd8d4a",
        "m-u1024-seed0": "c59a82cabe19",
        "l-u1024-seed0": "bb48314a1baf",
        "baseline-u1024-seed1": "0e5c43677e6e",
        "concat-u1024-seed1": "ba0953d420ef",
        "s-u1024-seed1": "2551f454539c",
        "m-u1024-seed1": "e24e079e3f03",
        "l-u1024-seed1": "0d276942c0ca",
        "baseline-u2048-seed0": "25dcfd5f4d36",
        "concat-u2048-seed0": "833184ffb049",
        "s-u2048-seed0": "6d76343f6cea",
        "m-u2048-seed0": "fb824ebbc39a",
        "l-u2048-seed0": "df336cc23d0b",
        "baseline-u2048-seed1": "d70fdc3a5d11",
        "concat-u2048-seed1": "bb86a3431e78",
        "s-u2048-seed1": "8576be5aadd0",
        "m-u2048-seed1": "de6da2e7683e",
        "l-u2048-seed1": "d48c8bdd56db",
    },
}


@pytest.mark.parametrize("sweep", sorted(PINNED_HASHES))
def test_preset_trial_hashes_do_not_drift(sweep):
    config = load_config(SweepConfig, repo_configs_dir() / "sweeps" / f"{sweep}.yaml")
    assert {t.name: config_hash(t) for t in config.trials()} == PINNED_HASHES[sweep]


def test_trial_presets_keep_their_hashes():
    trials = repo_configs_dir() / "trials"
    assert config_hash(load_config(TrialConfig, trials / "smoke.yaml")) == "60121f5dd762"
    assert config_hash(load_config(TrialConfig, trials / "baseline-smoke.yaml")) == "7f1c48be6930"


def test_batch_must_split_into_whole_micro_batches(tmp_path):
    path = write(tmp_path, "training: {batch_size: 12}\nresources: {num_workers: 8}\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrialConfig, path)
    assert str(err.value) == (
        f"{path}: training.batch_size: must be a multiple of resources.num_workers × "
        "deepspeed.gradient_accumulation_steps = 8 × 1 = 8, so every worker gets whole "
        "micro-batches (got 12)"
    )
    path = write(
        tmp_path, "training: {batch_size: 16}\ndeepspeed: {gradient_accumulation_steps: 3}\n"
    )
    with pytest.raises(ConfigError, match=r"preset.yaml: training.batch_size: .* = 1 × 3 = 3"):
        load_config(TrialConfig, path)
    ok = (
        "training: {batch_size: 24}\nresources: {num_workers: 2}\n"
        "deepspeed: {gradient_accumulation_steps: 3}\n"
    )
    assert load_config(TrialConfig, write(tmp_path, ok)).training.batch_size == 24


def test_fp16_needs_gpus_in_the_config(tmp_path):
    path = write(tmp_path, "deepspeed: {precision: fp16}\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrialConfig, path)
    assert str(err.value).startswith(f"{path}: deepspeed.precision: fp16 needs GPUs")
    assert "resources.gpus_per_worker is 0" in str(err.value)
    gpus = "deepspeed: {precision: fp16}\nresources: {gpus_per_worker: 1}\n"
    assert load_config(TrialConfig, write(tmp_path, gpus)).deepspeed.precision == "fp16"
    # The baseline runs no DeepSpeed: its engine settings are not checked.
    baseline = (
        "kind: baseline\ndeepspeed: {precision: fp16}\n"
        "training: {batch_size: 7}\nresources: {num_workers: 2}\n"
    )
    assert load_config(TrialConfig, write(tmp_path, baseline)).kind == "baseline"


def test_an_overridden_trial_is_rejected_like_a_loaded_one():
    trial = load_config(TrialConfig, repo_configs_dir() / "trials" / "smoke.yaml")
    with pytest.raises(ConfigError, match=r"--set: training.batch_size: must be a multiple"):
        with_overrides(trial, ["training.batch_size=7"])
    with pytest.raises(ConfigError, match=r"--set: deepspeed.precision: fp16 needs GPUs"):
        with_overrides(trial, ["deepspeed.precision=fp16"])


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "name: x\ntrial: {training: {batch_size: 12}, resources: {num_workers: 8}}\n",
            "trial.training.batch_size: must be a multiple of trial.resources.num_workers ×",
        ),
        (
            "name: x\ngrid: {model_sizes: [s, l]}\nresources_by_size: {l: {num_workers: 3}}\n",
            "trial.training.batch_size: must be a multiple of resources_by_size.l.num_workers ×",
        ),
        (
            "name: x\ntrial: {deepspeed: {precision: fp16}}\n"
            "resources_by_size: {s: {gpus_per_worker: 1}}\n",
            "trial.deepspeed.precision: fp16 needs GPUs, but trial.resources.gpus_per_worker is 0",
        ),
        ("name: x\ngrid: {model_sizes: [q]}\n", "grid.model_sizes: unknown size(s) ['q']"),
        (
            "name: x\ngrid: {model_sizes: [s]}\nresources_by_size: {xl: {}}\n",
            "resources_by_size: ['xl'] not in grid.model_sizes",
        ),
        (
            "name: x\nmodel_sizes: {tiny: {width: 24, depth: 2, speaker_channels: 12}}\n",
            "model_sizes.tiny.size: must be the entry's name 'tiny' (got 's')",
        ),
    ],
)
def test_sweep_rules_fail_at_load_naming_the_key(tmp_path, yaml_text, expected):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(SweepConfig, path)
    assert str(err.value).startswith(f"{path}: {expected}"), str(err.value)


def test_sweep_rules_check_every_neural_family_with_its_own_resources(tmp_path):
    text = (
        "name: x\ngrid: {model_sizes: [s]}\ntrial: {deepspeed: {precision: fp16}, "
        "resources: {gpus_per_worker: 1}}\nresources_by_size: {baseline: {gpus_per_worker: 0}}\n"
    )
    trials = load_config(SweepConfig, write(tmp_path, text)).trials()
    assert [t.kind for t in trials] == ["baseline", "neural"] * 2


# ---------------------------------------------------------------------------------------------
# One dial per model size


def test_a_size_name_resolves_width_depth_and_speaker_channels():
    assert ModelConfig(size="m") == MODEL_LADDER["m"]
    m = from_dict(TrialConfig, {"model": {"size": "m"}}).model
    assert (m.width, m.depth, m.speaker_channels) == (96, 3, 48)
    assert m.overrides == {} and m.label == "m"
    assert ModelConfig() == MODEL_LADDER["s"]
    smoke = load_config(TrialConfig, repo_configs_dir() / "trials" / "smoke.yaml")
    assert smoke.model == MODEL_LADDER["xs"] and smoke.name == "xs-u64-seed0"
    # A resolved config round-trips: the rung's values, given explicitly, are no override.
    assert from_dict(ModelConfig, {"size": "xs", "width": 16, "depth": 2}) == MODEL_LADDER["xs"]


def test_an_explicit_override_is_honoured_and_impossible_to_miss():
    plain = from_dict(TrialConfig, {"model": {"size": "xs"}})
    wide = from_dict(TrialConfig, {"model": {"size": "xs", "width": 32}})
    assert (wide.model.width, wide.model.depth, wide.model.speaker_channels) == (32, 2, 8)
    assert wide.model.overrides == {"width": 32}
    assert wide.name == "xs_w32-u1024-seed0" and wide.family == "xs_w32"
    assert config_hash(wide) != config_hash(plain)
    assert TrialConfig.from_dict(wide.to_dict()) == wide  # what a Ray worker receives
    deep = ModelConfig(size="m", depth=4, speaker_channels=64)
    assert deep.label == "m_d4c64" and deep.width == 96


def test_set_model_size_derives_the_new_rung_and_keeps_explicit_overrides():
    smoke = load_config(TrialConfig, repo_configs_dir() / "trials" / "smoke.yaml")
    assert with_overrides(smoke, ["model.size=m"]).model == MODEL_LADDER["m"]
    wide = with_overrides(smoke, ["model.width=32"])
    assert wide.model.overrides == {"width": 32} and wide.name == "xs_w32-u64-seed0"
    assert with_overrides(wide, ["model.size=l"]).model.label == "l_w32"
    assert with_overrides(smoke, ["model.width=16"]) == smoke
    assert replace(MODEL_LADDER["xs"], size="l") == MODEL_LADDER["l"]
    assert replace(MODEL_LADDER["xs"], dropout=0.0).width == 16


def test_a_size_off_the_ladder_gives_every_dimension(tmp_path):
    path = write(tmp_path, "model: {size: tiny, width: 24}\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrialConfig, path)
    assert str(err.value).startswith(f"{path}: model.depth: required: size 'tiny' is not on")
    assert "missing: depth, speaker_channels" in str(err.value)
    text = (
        "name: x\ngrid: {model_sizes: [tiny]}\n"
        "model_sizes: {tiny: {size: tiny, width: 24, depth: 2, speaker_channels: 12}}\n"
    )
    trials = load_config(SweepConfig, write(tmp_path, text)).trials()
    assert [t.name for t in trials if t.kind == "neural"] == [
        "tiny-u256-seed0",
        "tiny-u1024-seed0",
    ]


def test_protocols_name_the_field_they_need():
    with pytest.raises(ValueError, match="early_stop_patience"):
        TrainingConfig(protocol="converged")
    with pytest.raises(ValueError, match="steps: fixes the step count"):
        TrainingConfig(protocol="converged", early_stop_patience=2, steps=10)
    with pytest.raises(ValueError, match="samples_seen"):
        TrainingConfig(protocol="compute")
