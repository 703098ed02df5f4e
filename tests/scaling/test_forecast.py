"""Forecast, then measure: the forecast of pending trials from finished ones (scaling.forecast),
the sweep's phase and resume rules (scaling.sweep_forecast), `--forecast-only`, and the
report's "Forecast vs measured" section. Synthetic rows only: no Ray, no MLflow, no training."""

from __future__ import annotations

import html as html_module
import json
import math
from pathlib import Path

import numpy as np
import pytest

from scaling import sweep_forecast
from scaling.cli import main
from scaling.forecast import (
    Forecast,
    MetricForecast,
    TrialForecast,
    forecast_remaining,
    score_forecast,
)
from scaling.report_forecast import NO_FORECAST, forecast_section
from scaling.sweep import plan_sweep
from scaling.sweep_forecast import cheap_budgets, forecast_before_launch, split_phases
from store.records import ResultRow
from store.results_file import record_result
from training.config import DataBudget, SweepConfig, SweepGrid, TrialConfig, config_hash

BOOTSTRAP = 200  # enough resamples for an interval, few enough for a 2-core machine
PARAMS = {"s": 56_000, "m": 523_000, "l": 2_450_000, "baseline": None}
SECONDS_PER_STEP = {"s": 0.01, "m": 0.05, "l": 0.2}


def true_loss(family: str, utterances: float) -> float:
    """A known law per family: the floor falls with size, the data term grows with it."""
    if family == "baseline":
        return 2.9 + 2.0 / utterances**0.5
    n = PARAMS[family]
    return 1.5 + 370 / n**0.5 + 5.3 * (n / 61_000) ** 0.75 / utterances**0.7


def make_sweep(budgets: tuple[int, ...], seeds: tuple[int, ...] = (0,)) -> SweepConfig:
    grid = SweepGrid(
        model_sizes=("s", "m", "l"),
        data_budgets=tuple(DataBudget(utterances=u) for u in budgets),
        seeds=seeds,
    )
    return SweepConfig(name="fc", grid=grid)


def done_row(trial: TrialConfig, noise: float = 0.0) -> ResultRow:
    """The row a finished `trial` would leave, measuring the known law (× e^noise)."""
    u = trial.data.budget.utterances
    loss = true_loss(trial.family, u) * math.exp(noise)
    steps = round(trial.training.steps_per_sqrt_utterance * math.sqrt(u))
    neural = trial.kind == "neural"
    train = steps * SECONDS_PER_STEP[trial.family] if neural else 0.001 * u
    return ResultRow(
        trial=trial.name,
        kind=trial.kind,
        model_size=trial.family,
        params=PARAMS[trial.family] if neural else 40,
        data_utterances=u,
        seed=trial.seed,
        steps=steps,
        train_flops=6.0 * PARAMS[trial.family] * 8 * steps if neural else None,
        val_loss=loss,
        sim=min(0.99, 0.95 - 0.25 * (loss - 1.5)),
        wer=0.04 + 0.12 * (loss - 1.5),
        status="done",
        config_hash=config_hash(trial),
        train_seconds=train,
        eval_seconds=5.0,
        wall_seconds=train + 5.0 + 3.0,
        budget=trial.data.budget.label,
        finished_at=1.0,
    )


def noisy_rows(trials: list[TrialConfig], sigma: float = 0.02, seed: int = 1) -> list[ResultRow]:
    rng = np.random.default_rng(seed)
    return [done_row(t, float(rng.normal(0, sigma))) for t in trials]


# ---------------------------------------------------------------------------------------------
# The laws


def test_a_family_law_predicts_a_held_back_budget_within_its_interval() -> None:
    sweep = make_sweep((64, 256, 1024, 4096, 16384), seeds=(0, 1))
    trials = [t for t in sweep.trials() if t.family == "s"]
    cheap = [t for t in trials if t.data.budget.utterances < 16384]
    held_back = [t for t in trials if t.data.budget.utterances == 16384 and t.seed == 0]
    forecast = forecast_remaining(noisy_rows(cheap), held_back, ["val_loss"], bootstrap=BOOTSTRAP)
    f = forecast.trials["s-u16384-seed0"].metrics["val_loss"]
    assert f.law.startswith("L(D) of s (") and "8 rows, budgets 64, 256, 1024, 4096" in f.law, f
    assert f.lo < true_loss("s", 16384) < f.hi
    assert f.lo < f.value < f.hi and abs(f.value / true_loss("s", 16384) - 1) < 0.05


def test_too_few_points_in_a_family_fall_back_to_the_joint_law_or_say_why() -> None:
    sweep = make_sweep((64, 256, 1024, 4096))
    cheap, later = split_phases(sweep, sweep.trials())
    rows = noisy_rows(cheap)
    forecast = forecast_remaining(rows, later, ["val_loss", "sim"], bootstrap=50)
    # 3 budgets × 1 seed = 3 points: B/D^β (2 parameters) keeps a residual degree of freedom,
    # so every family, the baseline too, is forecast by its own law, as the report fits it.
    for family in ("s", "m", "l", "baseline"):
        for metric, f in forecast.trials[f"{family}-u4096-seed0"].metrics.items():
            assert f.law.startswith(f"L(D) of {family} (B/D^β), 3 rows"), (metric, f)
            assert f.lo <= f.value <= f.hi
    sim = forecast.trials["l-u4096-seed0"].metrics["sim"]
    assert sim.value < 1 and sim.lo < sim.hi  # fitted as 1 − sim and turned back
    # s missing a budget: 2 points, too few for its own law; the joint law over the 8 neural
    # rows (3 sizes, 3 budgets) forecasts it. The baseline has no joint law to fall back on.
    gappy = [r for r in rows if r.trial not in ("s-u1024-seed0", "baseline-u1024-seed0")]
    forecast = forecast_remaining(gappy, later, ["val_loss"], bootstrap=50)
    s_trial = forecast.trials["s-u4096-seed0"].metrics["val_loss"]
    assert s_trial.law.startswith("joint L(N, D) of the neural sizes, 8 rows"), s_trial
    baseline = forecast.trials["baseline-u4096-seed0"].metrics["val_loss"]
    assert baseline.value is None and baseline.lo is None
    assert "2 point(s)" in baseline.why and "joint law covers neural sizes only" in baseline.why

    two_budgets = [t for t in cheap if t.data.budget.utterances < 1024]
    f = forecast_remaining(noisy_rows(two_budgets), later[-1:], bootstrap=10)
    assert set(f.trials["l-u4096-seed0"].metrics) == {"val_loss", "sim", "wer"}  # all measured
    why = f.trials["l-u4096-seed0"].metrics["val_loss"].why
    assert f.trials["l-u4096-seed0"].metrics["val_loss"].value is None
    assert "2 measured budget(s)" in why and "needs ≥ 3 budgets, ≥ 2 sizes" in why

    xs = TrialConfig(kind="neural", model=make_sweep((64,)).sizes["xs"], data=later[0].data)
    f = forecast_remaining(noisy_rows(cheap), [xs], ["val_loss"], bootstrap=10)
    assert (
        "no measured xs trial gives its parameter count"
        in f.trials[xs.name].metrics["val_loss"].why
    )


def test_cost_of_the_remaining_trials_scales_per_family() -> None:
    sweep = make_sweep((64, 256, 1024, 4096))
    cheap, later = split_phases(sweep, sweep.trials())
    forecast = forecast_remaining(noisy_rows(cheap), later, [])  # the cost alone, no fit
    steps = round(sweep.trial.training.steps_per_sqrt_utterance * math.sqrt(4096))
    m = forecast.trials["m-u4096-seed0"]
    assert m.seconds == pytest.approx(steps * SECONDS_PER_STEP["m"] + 5.0 + 3.0)
    assert m.flops == pytest.approx(6.0 * PARAMS["m"] * 8 * steps)
    baseline = forecast.trials["baseline-u4096-seed0"]
    assert baseline.seconds == pytest.approx(0.001 * 4096 + 8.0) and baseline.flops is None
    seconds, flops, unknown = forecast.cost(t.name for t in later)
    assert seconds == pytest.approx(sum(forecast.trials[t.name].seconds for t in later))
    assert flops > 0 and unknown == []


# ---------------------------------------------------------------------------------------------
# Scoring


def entry(trial: str, **metrics: MetricForecast) -> TrialForecast:
    return TrialForecast(trial, f"hash-{trial}", "neural", "s", 4096.0, 5e4, 0.0, metrics)


def measured(trial: str, status: str = "done", **values: float) -> ResultRow:
    return ResultRow(trial=trial, status=status, config_hash=f"hash-{trial}", **values)


def test_hit_rate_on_a_hand_example() -> None:
    forecast = Forecast(
        {
            "a": entry(
                "a",
                val_loss=MetricForecast(2.0, 1.8, 2.2, "L(D)"),
                sim=MetricForecast(0.8, 0.7, 0.9, "L(D)"),
            ),
            "b": entry("b", val_loss=MetricForecast(2.0, 1.9, 2.1, "L(D)")),
            "c": entry("c", val_loss=MetricForecast(3.0, 2.5, 3.5, "L(D)")),  # not run yet
            "d": entry("d", val_loss=MetricForecast(why="too few budgets")),
            "e": entry("e", val_loss=MetricForecast(1.0, 0.5, 1.5, "L(D)")),  # failed
        }
    )
    rows = [
        measured("a", val_loss=2.1, sim=0.95),  # loss inside, sim outside
        measured("b", val_loss=2.5),  # outside
        measured("d", val_loss=2.0),
        measured("e", status="failed", val_loss=1.0),
    ]
    score = score_forecast(forecast, rows)
    rates = score.hit_rates
    assert (rates["val_loss"].scored, rates["val_loss"].covered) == (2, 1)
    assert rates["val_loss"].rate == 0.5
    assert (rates["sim"].scored, rates["sim"].covered, rates["sim"].rate) == (1, 0, 0.0)
    by_key = {(e.trial, e.metric): e for e in score.entries}
    assert by_key[("a", "val_loss")].covered is True
    assert by_key[("a", "val_loss")].relative_error == pytest.approx((2.0 - 2.1) / 2.1)
    assert by_key[("b", "val_loss")].covered is False
    assert by_key[("c", "val_loss")].measured is None and by_key[("c", "val_loss")].covered is None
    assert by_key[("d", "val_loss")].measured == 2.0 and by_key[("d", "val_loss")].covered is None
    assert by_key[("e", "val_loss")].measured is None  # a failed trial measured nothing

    other_config = [measured("a", val_loss=2.1)]
    object.__setattr__(other_config[0], "config_hash", "changed")
    assert score_forecast(forecast, other_config).hit_rates["val_loss"].scored == 0


# ---------------------------------------------------------------------------------------------
# The sweep: phases, the forecast point, resume, --forecast-only


def test_the_cheap_phase_leaves_three_budgets_to_fit() -> None:
    budgets = [DataBudget(utterances=u) for u in (64, 256, 1024, 4096, 8192, 16384, 32768, 65536)]
    assert [len(cheap_budgets(budgets[:k])) for k in range(1, 9)] == [0, 0, 0, 3, 3, 3, 4, 4]
    assert cheap_budgets(budgets[:4][::-1]) == budgets[:3]  # smallest first, whatever the order
    sweep = make_sweep((64, 256))
    assert split_phases(sweep, sweep.trials()) == (sweep.trials(), [])


class FakeQueue:
    """The tracking queue's submit, applied to a tracker that records what it was given."""

    def __init__(self) -> None:
        self.logged: list[tuple[dict, dict]] = []

    def submit(self, what: str, call) -> None:
        call(self)

    def log_forecast(self, forecast: dict, metrics: dict) -> None:
        self.logged.append((forecast, metrics))


def write_rows(runs: Path, rows: list[ResultRow]) -> None:
    (runs / "fc").mkdir(parents=True, exist_ok=True)
    for row in rows:
        record_result(runs / "fc" / "results.jsonl", row)


def test_forecast_json_is_kept_on_resume_and_extended_for_a_new_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sweep_forecast, "forecast_remaining", _quick_forecast)
    sweep = make_sweep((64, 256, 1024, 4096))
    cheap, later = split_phases(sweep, sweep.trials())
    write_rows(tmp_path, noisy_rows(cheap))
    queue = FakeQueue()
    forecast_before_launch(plan_sweep(sweep, tmp_path), later, queue)
    path = tmp_path / "fc" / "forecast.json"
    first = path.read_bytes()
    assert [t["trial"] for t in json.loads(first)["trials"]] == [t.name for t in later]
    printed = capsys.readouterr().out
    assert "forecast of 4 trial(s)" in printed and "cost of the 4 remaining trial(s)" in printed
    payload, metrics = queue.logged[0]
    assert payload == json.loads(first)
    (group,) = metrics.values()
    assert "forecast.l-u4096-seed0.val_loss.lo" in group

    # Interrupted after l ran; resumed: the others are still pending, nothing is rewritten.
    # Without -v the console gets a summary of three lines, not a line per trial and metric.
    write_rows(tmp_path, noisy_rows(later[-1:], seed=2))
    rest = later[:-1]
    forecast_before_launch(plan_sweep(sweep, tmp_path), rest, FakeQueue(), table=False)
    assert path.read_bytes() == first
    summary = capsys.readouterr().out.splitlines()
    assert len(summary) == 3 and summary[0].startswith(f"forecast of {len(rest)} trial(s)")
    entries = {t["trial"]: t for t in json.loads(first)["trials"]}
    values = sum(len(entries[t.name]["metrics"]) for t in rest)
    assert f"of {values} trial × metric values forecast" in summary[1]
    assert str(path) in summary[1] and summary[2].startswith("cost of the")

    # The grid grows by one budget: its trials are forecast now, the old entries stay as made.
    bigger = make_sweep((64, 256, 1024, 4096, 16384))
    _, later2 = split_phases(bigger, plan_sweep(bigger, tmp_path).pending)
    assert {t.data.budget.utterances for t in later2} == {4096, 16384}
    forecast_before_launch(plan_sweep(bigger, tmp_path), later2, FakeQueue())
    after = json.loads(path.read_text())
    old = {t["trial"]: t for t in json.loads(first)["trials"]}
    kept = [t for t in after["trials"] if t["trial"] in old]
    assert kept == list(old.values())
    assert {t["trial"] for t in after["trials"]} - set(old) == {
        t.name for t in later2 if t.data.budget.utterances == 16384
    }


def _quick_forecast(rows, pending, metrics=None, **options):
    return forecast_remaining(rows, pending, ["val_loss"], bootstrap=20)


def write_config(tmp_path: Path, budgets: tuple[int, ...]) -> Path:
    listed = "".join(f"    - {{utterances: {u}}}\n" for u in budgets)
    path = tmp_path / "fc.yaml"
    path.write_text(f"name: fc\ngrid:\n  model_sizes: [s, m, l]\n  data_budgets:\n{listed}")
    return path


def test_forecast_only_says_which_cheap_trials_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, (64, 256, 1024, 4096))
    sweep = make_sweep((64, 256, 1024, 4096))
    cheap, _ = split_phases(sweep, sweep.trials())
    write_rows(tmp_path, noisy_rows(cheap[:-2]))
    argv = ["sweep", "--config", str(config), "--runs-dir", str(tmp_path), "--forecast-only"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the forecast needs every cheap trial finished; 2 of 12 are not" in err
    assert cheap[-1].name in err and cheap[-2].name in err
    assert not (tmp_path / "fc" / "forecast.json").exists()

    two = write_config(tmp_path, (64, 256))
    assert main(["sweep", "--config", str(two), "--runs-dir", str(tmp_path), "--forecast-only"])
    assert "a forecast needs ≥ 4" in capsys.readouterr().err


def test_forecast_only_prints_the_forecast_and_the_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sweep_forecast, "forecast_remaining", _quick_forecast)
    config = write_config(tmp_path, (64, 256, 1024, 4096))
    sweep = make_sweep((64, 256, 1024, 4096))
    cheap, later = split_phases(sweep, sweep.trials())
    write_rows(tmp_path, noisy_rows(cheap))
    argv = ["sweep", "--config", str(config), "--runs-dir", str(tmp_path), "--forecast-only"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for trial in later:
        assert trial.name in out
    assert "cost of the 4 remaining trial(s): ≈ " in out and "training FLOPs" in out
    assert not (tmp_path / "fc" / "forecast.json").exists(), "--forecast-only writes nothing"


# ---------------------------------------------------------------------------------------------
# The report


def test_report_section_shows_forecast_vs_measured_and_the_hit_rate() -> None:
    forecast = Forecast(
        {
            "a": entry("a", val_loss=MetricForecast(2.0, 1.8, 2.2, "L(D) of s")),
            "b": entry("b", val_loss=MetricForecast(why="too few budgets")),
        }
    )
    html = forecast_section(forecast, [measured("a", val_loss=2.1)])
    assert "<h2>Forecast vs measured</h2>" in html
    assert "<td>1</td><td>1</td><td>100%</td>" in html  # scored, covered, hit rate
    assert "2 [1.8, 2.2]" in html and 'class="ok">yes' in html and "too few budgets" in html
    assert html_module.escape(NO_FORECAST) in forecast_section(None, [])
