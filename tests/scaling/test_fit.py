"""Scaling-law fits: Epoch AI's Chinchilla refit, recovery of seeded synthetic laws, the
plateau and extrapolation checks, `analyse_results` and `voicescale fit`."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from scaling.analysis import analyse_results, describe_seed_figure, seed_figure
from scaling.checks import compute_frontier, extrapolation_check, plateau_test
from scaling.fit_cli import add_fit_parser
from scaling.law import start_grid
from scaling.optimise import minimise_from_starts
from scaling.power_law import fit_power_law
from store.records import ResultRow
from training.config import ConfigError

EPOCH_CSV = Path(__file__).parents[1] / "data" / "chinchilla_fig4_epoch2024.csv"
"""Epoch AI's digitised Chinchilla runs, kept in the repository (see data/README.md)."""


def epoch_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, loss): D = FLOP / (6 N), the 5 highest losses dropped → 240 points."""
    with EPOCH_CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    n = np.array([float(r["Model Size"]) for r in rows])
    d = np.array([float(r["Training FLOP"]) for r in rows]) / (6 * n)
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.sort(np.argsort(loss, kind="stable")[:-5])
    return n[keep], d[keep], loss[keep]


@pytest.fixture(scope="module")
def epoch_fit():
    """The acceptance fit: 240 points, 1,000 bootstraps (seconds: bench/fit_epoch.py)."""
    n, d, loss = epoch_data()
    return fit_power_law(d, loss, n, bootstrap=1000, seed=0)


def data_law(d, e=1.2, b=30.0, beta=0.4):
    return e + b / np.asarray(d, float) ** beta


def joint_law(n, d, e=1.5, a=300.0, alpha=0.35, b=40.0, beta=0.4):
    return e + a / np.asarray(n, float) ** alpha + b / np.asarray(d, float) ** beta


def noisy(values, noise, seed):
    return values * np.exp(np.random.default_rng(seed).normal(0, noise, np.shape(values)))


# ---------------------------------------------------------------------------------------------
# Epoch AI's refit of Chinchilla


def test_epoch_refit_lands_on_the_published_values(epoch_fit):
    p = epoch_fit.params
    assert epoch_fit.ok and epoch_fit.n_points == 240
    assert abs(p["E"] - 1.817) <= 0.03
    assert abs(p["alpha"] - 0.348) <= 0.02
    assert abs(p["beta"] - 0.366) <= 0.03
    assert 300 < p["A"] < 700 and 1000 < p["B"] < 4000  # published 482, 2085 (SE 125, 1293)
    # Not the original paper's values (averaged Huber, early-stopped L-BFGS).
    assert abs(p["E"] - 1.69) > 0.1 and abs(p["beta"] - 0.28) > 0.05


def test_epoch_optimum_is_the_grid_minimum_scipy_would_find(epoch_fit):
    """scipy's L-BFGS-B from a spread of grid starts finds nothing better than the fit."""
    n, d, loss = epoch_data()
    logx, logy = np.column_stack([np.log(n), np.log(d)]), np.log(loss)
    starts = start_grid("joint")[::300]
    _, objectives = minimise_from_starts(starts, logx, logy, engine="scipy")
    assert objectives.min() >= epoch_fit.objective * (1 - 1e-9)


def test_epoch_refit_with_1000_bootstraps_matches_the_published_intervals(epoch_fit):
    fit = epoch_fit
    assert len(fit.boot_theta) == 1000
    published = {"E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}
    for name, (lo, hi) in published.items():
        fit_lo, fit_hi = fit.intervals[name]
        assert abs(fit_lo - lo) <= 0.012 and abs(fit_hi - hi) <= 0.012, (name, fit_lo, fit_hi)


@pytest.mark.slow
def test_bootstrap_shortcut_reaches_the_full_grid_optimum(epoch_fit):
    """Bootstrap replicates start from the full-data optimum (and rival optima) instead of the
    4,500-start grid; on resamples of the reference data both reach the same optimum."""
    n, d, loss = epoch_data()
    logx, logy = np.column_stack([np.log(n), np.log(d)]), np.log(loss)
    grid = start_grid("joint")
    shortcut = np.vstack([epoch_fit.theta[None, :], epoch_fit.other_optima])
    rng = np.random.default_rng(7)
    for _ in range(2):
        weights = np.bincount(rng.integers(0, len(logy), len(logy)), minlength=len(logy))
        weights = weights.astype(float)
        _, full = minimise_from_starts(grid, logx, logy, np.tile(weights, (len(grid), 1)))
        _, cut = minimise_from_starts(shortcut, logx, logy, np.tile(weights, (len(shortcut), 1)))
        assert cut.min() <= full.min() * (1 + 1e-9)


def test_batched_grid_matches_scipy_from_every_start():
    d = np.repeat([300.0, 600, 1200, 2400, 4800], 2)
    loss = noisy(data_law(d), 0.01, seed=3)
    logx, logy = np.log(d)[:, None], np.log(loss)
    grid = start_grid("data")
    _, batched = minimise_from_starts(grid, logx, logy)
    _, scipy = minimise_from_starts(grid, logx, logy, engine="scipy")
    fit = fit_power_law(d, loss, bootstrap=0)
    assert fit.objective <= scipy.min() * (1 + 1e-9)
    assert batched.min() <= scipy.min() * (1 + 1e-6)


# ---------------------------------------------------------------------------------------------
# Seeded synthetic laws


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.03])
def test_data_law_parameters_are_recovered(noise):
    d = np.repeat([250.0, 500, 1000, 2000, 4000, 8000, 16000], 3)
    loss = noisy(data_law(d), noise, seed=11)
    fit = fit_power_law(d, loss, bootstrap=200, seed=1)
    truth = {"E": 1.2, "B": 30.0, "beta": 0.4}
    _assert_recovered(fit, truth, noise)


def joint_fit(noise: float, bootstrap: int):
    n, d = np.meshgrid([1e6, 3e6, 1e7, 3e7, 1e8], [250.0, 1000, 4000, 16000, 64000])
    n, d = np.repeat(n.ravel(), 2), np.repeat(d.ravel(), 2)
    loss = noisy(joint_law(n, d), noise, seed=5)
    return fit_power_law(d, loss, n, bootstrap=bootstrap, seed=2)


@pytest.fixture(scope="module")
def exact_joint_fit():
    return joint_fit(0.0, bootstrap=10)


JOINT_TRUTH = {"E": 1.5, "A": 300.0, "alpha": 0.35, "B": 40.0, "beta": 0.4}


def test_exact_joint_law_is_recovered(exact_joint_fit):
    _assert_recovered(exact_joint_fit, JOINT_TRUTH, 0.0)


def test_noisy_joint_law_is_inside_its_intervals():
    _assert_recovered(joint_fit(0.02, bootstrap=100), JOINT_TRUTH, 0.02)


def _assert_recovered(fit, truth: dict[str, float], noise: float) -> None:
    assert fit.ok, fit.message
    for name, value in truth.items():
        if noise == 0:
            assert fit.params[name] == pytest.approx(value, rel=1e-3), name
        else:
            lo, hi = fit.intervals[name]
            assert lo <= value <= hi, (name, value, lo, hi, fit.params[name])


def test_bootstrap_is_reproducible_from_its_seed():
    d = np.repeat([250.0, 500, 1000, 2000], 2)
    loss = noisy(data_law(d), 0.02, seed=0)
    first = fit_power_law(d, loss, bootstrap=30, seed=4)
    again = fit_power_law(d, loss, bootstrap=30, seed=4)
    other = fit_power_law(d, loss, bootstrap=30, seed=5)
    assert first.intervals == again.intervals
    assert first.intervals != other.intervals


def test_prediction_band_contains_the_prediction_and_widens_with_noise():
    d = np.repeat([250.0, 500, 1000, 2000, 4000], 3)
    fit = fit_power_law(d, noisy(data_law(d), 0.02, seed=1), bootstrap=100, seed=0)
    mid, lo, hi = fit.band([8000.0])
    _, conf_lo, conf_hi = fit.band([8000.0], noise=False)
    assert lo[0] <= mid[0] <= hi[0]
    assert hi[0] - lo[0] > conf_hi[0] - conf_lo[0]


# ---------------------------------------------------------------------------------------------
# What cannot be fitted


def test_too_few_budgets_give_a_failed_fit_not_an_error():
    fit = fit_power_law([100.0, 100, 200, 200], [3.0, 3.1, 2.9, 2.8])
    assert not fit.ok and "2 distinct 'd'" in fit.message and "at least 3" in fit.message
    joint = fit_power_law([100.0, 200, 400], [3.0, 2.9, 2.8], [1e6, 1e6, 1e6])
    assert not joint.ok and "'n'" in joint.message
    assert math.isnan(fit.params["E"]) and math.isnan(fit.intervals["beta"][0])


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        ([3.0, 0.0, 2.5], "'val_loss' must be finite and > 0: value 0.0 at index 1"),
        ([3.0, -1.0, 2.5], "'val_loss' must be finite and > 0"),
        ([3.0, float("nan"), 2.5], "'val_loss' must be finite and > 0"),
        ([2.0, 2.0, 2.0], "'val_loss': all 3 values equal 2"),
    ],
)
def test_degenerate_losses_raise_naming_the_column(loss, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        fit_power_law([100.0, 200, 400], loss, names=("utterances", "val_loss", "params"))


def test_non_positive_budget_names_its_column():
    with pytest.raises(ValueError, match="'utterances' must be finite and > 0"):
        fit_power_law([100.0, 0, 400], [3.0, 2.9, 2.8], names=("utterances", "loss", "n"))


# ---------------------------------------------------------------------------------------------
# Plateau and extrapolation


def test_flat_family_is_plateaued_and_improving_one_is_not():
    d = np.repeat([250.0, 500, 1000, 2000], 2)
    flat = noisy(np.full(len(d), 3.0), 0.002, seed=2)
    improving = noisy(data_law(d), 0.005, seed=2)
    for loss, expected in ((flat, True), (improving, False)):
        fit = fit_power_law(d, loss, bootstrap=100, seed=0)
        means = [loss[d == b].mean() for b in np.unique(d)]
        result = plateau_test(fit, np.unique(d), means)
        assert result["basis"] == "fit"
        assert result["plateaued"] is expected
        lo, hi = result["fitted_gain_2x_ci"]
        assert lo <= result["fitted_gain_2x"] <= hi


def test_plateau_falls_back_to_the_measured_gain_and_says_so():
    fit = fit_power_law([100.0, 200], [3.0, 2.999])
    result = plateau_test(fit, [100.0, 200], [3.0, 2.999])
    assert result["basis"] == "measured" and result["plateaued"] is True
    assert result["measured_gain"] == pytest.approx(0.001 / 3)
    assert "measured gain" in result["note"]
    improving = plateau_test(None, [100.0, 200], [3.0, 2.5])
    assert improving["basis"] == "measured" and improving["plateaued"] is False


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_extrapolation_is_covered_when_the_law_holds(noise):
    d = np.repeat([250.0, 500, 1000, 2000, 4000, 8000], 3)
    loss = noisy(data_law(d), noise, seed=1)
    result = extrapolation_check(d, loss, bootstrap=200, seed=0)
    (check,) = result["checks"]
    assert result["dropped_d"] == 8000 and check["d"] == 8000
    assert check["covered"] is True
    assert abs(check["relative_error"]) < 0.03
    assert check["interval"][0] <= check["predicted"] <= check["interval"][1]


def test_extrapolation_is_not_covered_when_the_largest_budget_deviates():
    d = np.repeat([250.0, 500, 1000, 2000, 4000, 8000], 3)
    loss = noisy(data_law(d), 0.01, seed=1)
    loss[d == 8000] *= 1.15  # the law breaks at the largest budget
    (check,) = extrapolation_check(d, loss, bootstrap=200, seed=0)["checks"]
    assert check["covered"] is False
    assert check["relative_error"] == pytest.approx(-0.13, abs=0.03)


# ---------------------------------------------------------------------------------------------
# Compute frontier


def test_frontier_is_the_pareto_set_with_its_hull_and_optimal_allocation(exact_joint_fit):
    points = [
        {"trial": "a", "n": 1.0, "d": 10.0, "flops": 60.0, "loss": 3.0},
        {"trial": "b", "n": 1.0, "d": 20.0, "flops": 120.0, "loss": 3.1},  # dominated by a
        {"trial": "c", "n": 2.0, "d": 20.0, "flops": 240.0, "loss": 2.9},  # above the hull
        {"trial": "d", "n": 4.0, "d": 20.0, "flops": 480.0, "loss": 2.0},
        {"trial": "e", "n": 2.0, "d": 10.0, "flops": 0.0, "loss": 1.0},  # no compute: ignored
    ]
    frontier = compute_frontier(points)
    assert [p["trial"] for p in frontier["points"]] == ["a", "c", "d"]
    assert [p["on_hull"] for p in frontier["points"]] == [True, False, True]
    assert frontier["k"] == 6.0 and frontier["optimal"] is None

    fit = exact_joint_fit
    optimal = compute_frontier(points, fit)["optimal"]
    n_opt, d_opt, flops = (np.array(optimal[key]) for key in ("n", "d", "flops"))
    np.testing.assert_allclose(6.0 * n_opt * d_opt, flops, rtol=1e-9)
    p = fit.params  # first-order condition of min A/N^α + B/D^β at fixed N·D
    np.testing.assert_allclose(
        p["alpha"] * p["A"] * n_opt ** -p["alpha"], p["beta"] * p["B"] * d_opt ** -p["beta"]
    )


# ---------------------------------------------------------------------------------------------
# analyse_results on results.jsonl rows

SIZES = {"s": 1e6, "m": 4e6, "l": 1.6e7}
BUDGETS = (500, 1000, 2000, 4000)


def result_row(size: str, n: float, d: int, seed: int, loss: float, **extra) -> ResultRow:
    row = {
        "trial": f"{size}-{d}-{seed}",
        "kind": "baseline" if size == "baseline" else "neural",
        "model_size": size,
        "params": int(n),
        "data_hours": d / 1000,
        "data_utterances": d,
        "seed": seed,
        "steps": 100,
        "train_flops": 6.0 * n * d * 20 if n else 0.0,
        "val_loss": loss,
        "sim": 1 - loss / 10,
        "sim_ci": [0.0, 1.0],
        "wer": loss / 20,
        "wer_ci": [0.0, 1.0],
        "status": "done",
    }
    return ResultRow.from_json(row | extra)


@pytest.fixture(scope="module")
def sweep_rows() -> list[ResultRow]:
    rng = np.random.default_rng(0)
    rows = [
        result_row(size, n, d, seed, float(joint_law(n, d) * math.exp(rng.normal(0, 0.01))))
        for size, n in SIZES.items()
        for d in BUDGETS
        for seed in (0, 1)
    ]
    rows += [result_row("baseline", 0, d, 0, 3.0 * math.exp(rng.normal(0, 0.002))) for d in BUDGETS]
    rows += [result_row("xl", 6.4e7, d, 0, float(joint_law(6.4e7, d))) for d in (500, 1000)]
    rows.append(result_row("l", SIZES["l"], 8000, 0, float("nan")))  # no finite metric
    rows.append(result_row("l", SIZES["l"], 8000, 1, 1.0, status="failed"))
    return rows


@pytest.fixture(scope="module")
def analysis(sweep_rows) -> dict:
    return analyse_results(sweep_rows, metric="val_loss", bootstrap=50, seed=0)


def test_analysis_does_not_depend_on_the_order_trials_finished_in(sweep_rows, analysis):
    """results.jsonl is in completion order, which scheduling changes from run to run; the
    fits, their bootstrap draws and fits.json's text must not."""
    shuffled = [sweep_rows[i] for i in np.random.default_rng(1).permutation(len(sweep_rows))]
    again = analyse_results(shuffled, metric="val_loss", bootstrap=50, seed=0)
    assert json.dumps(again) == json.dumps(analysis)


def test_analysis_has_the_agreed_shape_and_is_strict_json(analysis):
    json.dumps(analysis, allow_nan=False)
    assert analysis["metric"] == "val_loss" and analysis["transform"] is None
    assert analysis["bootstrap"] == 50
    assert list(analysis["families"]) == ["s", "m", "l", "xl", "baseline"]
    for family in analysis["families"].values():
        assert set(family) >= {"kind", "params", "points", "fit", "curve", "plateau"}
        assert set(family["fit"]) >= {
            "ok",
            "message",
            "law",
            "B",
            "beta",
            "intervals",
            "objective",
            "not_identified",
            "selection",
            "alternatives",
        }
        assert set(family["plateau"]) >= {
            "measured_gain",
            "fitted_gain_2x",
            "fitted_gain_2x_ci",
            "plateaued",
            "basis",
        }
    assert set(analysis["joint"]) >= {
        "ok",
        "E",
        "A",
        "B",
        "alpha",
        "beta",
        "intervals",
        "not_identified",
        "surface",
    }
    assert set(analysis["joint"]["forecast"]) >= {
        "d_max",
        "n_max",
        "n_next",
        "loss_now",
        "loss_next_size",
        "loss_2x_data",
    }
    assert set(analysis["frontier"]) == {"points", "k", "k_spread", "optimal", "optimal_absent"}
    assert set(analysis["extrapolation"]) >= {"dropped_d", "families", "joint"}
    assert analysis["verdict"] and all(isinstance(line, str) for line in analysis["verdict"])


def test_analysis_points_average_seeds_and_curves_cover_the_budgets(analysis, sweep_rows):
    medium = analysis["families"]["m"]
    assert [p["d"] for p in medium["points"]] == list(BUDGETS)
    first = medium["points"][0]
    losses = [r.val_loss for r in sweep_rows if r.trial in ("m-500-0", "m-500-1")]
    assert first["seeds"] == 2 and first["loss"] == pytest.approx(np.mean(losses))
    assert first["loss_min"] == min(losses) and first["loss_max"] == max(losses)
    assert medium["kind"] == "neural" and medium["params"] == 4_000_000
    curve = medium["curve"]
    assert len(curve["d"]) == 60 and curve["d"][0] == pytest.approx(500 / 1.5)
    assert curve["d"][-1] == pytest.approx(8000)
    assert all(
        lo <= mid <= hi for lo, mid, hi in zip(curve["lo"], curve["loss"], curve["hi"], strict=True)
    )
    large = analysis["families"]["l"]  # the NaN and failed rows at 8000 are left out
    assert [p["d"] for p in large["points"]] == list(BUDGETS)


def test_analysis_judges_plateaus_and_forecasts(analysis):
    families = analysis["families"]
    assert families["baseline"]["plateau"]["plateaued"] is True
    assert families["baseline"]["kind"] == "baseline"
    for size in SIZES:
        assert families[size]["fit"]["ok"] and families[size]["plateau"]["plateaued"] is False
    joint = analysis["joint"]
    assert joint["ok"] and joint["sizes"] == ["s", "m", "l", "xl"]
    forecast = joint["forecast"]
    assert forecast["n_max"] == 6.4e7 and forecast["n_next"] == pytest.approx(6.4e7 * 4)
    assert forecast["d_max"] == 4000
    for mid, lo, hi in (forecast["loss_next_size"], forecast["loss_2x_data"]):
        assert lo <= mid <= hi and mid < forecast["loss_now"]
    assert any("one more model size" in line for line in analysis["verdict"])
    frontier = analysis["frontier"]
    assert frontier["k"] == pytest.approx(120.0) and frontier["optimal"]["n"]


def test_analysis_reports_unfittable_families_without_crashing(analysis):
    xl = analysis["families"]["xl"]
    assert xl["fit"]["ok"] is False and "at least 3" in xl["fit"]["message"]
    assert xl["curve"] == {"d": [], "loss": [], "lo": [], "hi": []}
    assert xl["plateau"]["basis"] == "measured"
    extrapolation = analysis["extrapolation"]
    assert extrapolation["dropped_d"] == 4000
    assert extrapolation["families"]["xl"]["ok"] is False
    for size in SIZES:
        check = extrapolation["families"][size]
        assert check["ok"] and isinstance(check["covered"], bool)
        assert check["interval"][0] <= check["predicted"] <= check["interval"][1]
    assert set(extrapolation["joint"]) == {"s", "m", "l"}
    for check in extrapolation["joint"].values():
        assert abs(check["relative_error"]) < 0.05 and isinstance(check["covered"], bool)


def test_analysis_of_sim_fits_one_minus_sim(sweep_rows):
    rows = [r for r in sweep_rows if r.model_size in ("m", "baseline")]
    result = analyse_results(rows, metric="sim", bootstrap=10, seed=0)
    json.dumps(result, allow_nan=False)
    assert result["transform"] == "1 - sim" and result["joint"] is None
    point = result["families"]["m"]["points"][0]
    sims = [r.sim for r in rows if r.trial in ("m-500-0", "m-500-1")]
    assert point["loss"] == pytest.approx(1 - np.mean(sims))
    assert any("No joint fit" in line for line in result["verdict"])


def test_analysis_of_no_usable_rows_is_still_a_report():
    result = analyse_results([ResultRow(trial="x", status="failed")], bootstrap=5)
    json.dumps(result, allow_nan=False)
    assert result["families"] == {} and result["joint"] is None and result["verdict"]
    with pytest.raises(ValueError, match="metric must be one of"):
        analyse_results([], metric="mos")


def test_seed_figure_reads_typed_rows(sweep_rows):
    """Here the flat baseline (3.0) beats every neural size, so the order check fails."""
    check = seed_figure(sweep_rows)
    assert check["budgets"] == [2000, 4000] and check["order"] == ["xl", "l", "s", "baseline"]
    assert check["at_largest_budget"]["xl"] is None and check["order_holds"] is False
    assert check["baseline_plateaus"] and check["largest_gain"] is None  # xl stops at 1000
    without_xl = [r for r in sweep_rows if r.model_size != "xl"]
    check = seed_figure(without_xl)
    assert check["order"] == ["l", "m", "s", "baseline"] and not check["order_holds"]
    assert check["largest_keeps_improving"] and check["baseline_plateaus"]
    head, order, *gains = describe_seed_figure(without_xl)
    assert head.startswith("seed's figure (val_loss") and order.lstrip().startswith("✗")
    assert all(line.lstrip().startswith("✓") for line in gains)
    assert seed_figure(without_xl[:8]) is None  # one neural size: nothing to check


def test_the_fit_module_still_offers_the_whole_api():
    import scaling.fit

    assert scaling.fit.analyse_results is analyse_results
    assert scaling.fit.fit_power_law is fit_power_law
    assert set(scaling.fit.__all__) <= set(dir(scaling.fit))


# ---------------------------------------------------------------------------------------------
# voicescale fit


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_fit_parser(parser.add_subparsers())
    args = parser.parse_args(["fit", *argv])
    return args.handler(args)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def law_csv(tmp_path) -> Path:
    d = np.repeat([250.0, 500, 1000, 2000, 4000], 2)
    loss = noisy(data_law(d), 0.01, seed=0)
    return write_csv(
        tmp_path / "runs.csv", ["utts", "val loss"], [[a, b] for a, b in zip(d, loss, strict=True)]
    )


def test_cli_fits_l_of_d_and_prints_one_json_object(law_csv, capsys):
    argv = ["--csv", str(law_csv), "--d", "utts", "--loss", "val loss"]
    assert run_cli(*argv, "--bootstrap", "40", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["form"] == "data" and out["n_points"] == 10 and out["A"] is None
    assert set(out["intervals"]) == {"E", "A", "B", "alpha", "beta"}
    assert out["intervals"]["E"][0] <= out["E"] <= out["intervals"]["E"][1]
    assert out["seconds"] >= 0 and out["beta"] == pytest.approx(0.4, abs=0.2)
    assert run_cli(*argv, "--bootstrap", "10") == 0
    table = capsys.readouterr().out
    assert "E + B/D^beta" in table and "beta" in table and "95 % interval" in table


def test_cli_derives_d_from_flops_for_the_joint_law(tmp_path, capsys):
    n, d = np.meshgrid([1e6, 4e6, 1.6e7], [500.0, 1000, 2000, 4000])
    n, d = n.ravel(), d.ravel()
    rows = [[a, 6 * a * b, loss] for a, b, loss in zip(n, d, joint_law(n, d), strict=True)]
    path = write_csv(tmp_path / "runs.csv", ["N", "C", "L"], rows)
    argv = ["--csv", str(path), "--n", "N", "--flops", "C", "--d-from-flops", "--loss", "L"]
    assert run_cli(*argv, "--bootstrap", "5", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["form"] == "joint" and out["n_points"] == 12 and out["k"] == pytest.approx(6.0)
    for name, value in JOINT_TRUTH.items():
        assert out[name] == pytest.approx(value, rel=1e-3), name


@pytest.mark.slow
def test_cli_reproduces_the_epoch_refit_from_the_csv(capsys):
    argv = ["--csv", str(EPOCH_CSV), "--n", "Model Size", "--flops", "Training FLOP"]
    argv += ["--d-from-flops", "--loss", "loss", "--drop-highest", "5", "--bootstrap", "5"]
    assert run_cli(*argv, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_points"] == 240 and out["dropped"] == 5 and out["k"] == pytest.approx(6.0)
    assert abs(out["E"] - 1.817) <= 0.03 and abs(out["alpha"] - 0.348) <= 0.02
    assert abs(out["beta"] - 0.366) <= 0.03


@pytest.mark.parametrize(
    ("rows", "argv", "message"),
    [
        ([["1", "2"]], ["--d", "utts", "--loss", "nope"], "no column 'nope' (columns: utts, loss)"),
        (
            [["100", "3"], ["200", "abc"]],
            ["--d", "utts", "--loss", "loss"],
            "row 2 (line 3), column 'loss': 'abc' is not a number",
        ),
        (
            [["100", "3"], ["-5", "2"]],
            ["--d", "utts", "--loss", "loss"],
            "row 2 (line 3), column 'utts': must be a finite number > 0, got '-5'",
        ),
        ([["100", "3"]], ["--d-from-flops", "--loss", "loss"], "--d-from-flops needs --flops"),
        (
            [["100", "3"], ["200", "2.5"], ["400", "2.2"]],
            ["--d", "utts", "--loss", "loss", "--drop-highest", "1"],
            "cannot fit: 2 distinct 'utts' values",
        ),
    ],
)
def test_cli_bad_input_names_the_row_and_column(tmp_path, rows, argv, message):
    path = write_csv(tmp_path / "bad.csv", ["utts", "loss"], rows)
    with pytest.raises(ConfigError) as err:
        run_cli("--csv", str(path), *argv)
    assert message in str(err.value)
    assert str(path) in str(err.value) or "--" in message


def test_cli_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        run_cli("--csv", str(tmp_path / "absent.csv"), "--d", "d", "--loss", "loss")
