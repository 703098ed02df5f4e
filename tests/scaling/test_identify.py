"""Honest fits: form selection, parameters the data do not identify, checks that need a
residual degree of freedom, and a compute frontier only where C = k·N·D holds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from scaling.analysis import analyse_results
from scaling.checks import compute_frontier, extrapolation_check
from scaling.identify import choose_form, fit_json, not_identified
from scaling.power_law import fit_power_law
from scaling.seed_figure import seed_figure
from store.records import ResultRow

BUDGETS = (64, 128, 256, 512, 1024, 2048, 4096)


def noisy(values: np.ndarray, sd: float, seed: int = 0) -> np.ndarray:
    return values * np.exp(np.random.default_rng(seed).normal(0, sd, len(values)))


def two_seeds(law) -> tuple[np.ndarray, np.ndarray]:
    d = np.repeat(np.asarray(BUDGETS, float), 2)
    return d, noisy(law(d), 0.005)


def test_a_visible_floor_keeps_e_and_a_pure_power_law_drops_it():
    d, with_floor = two_seeds(lambda d: 0.6 + 8.0 / d**0.5)
    choice = choose_form(
        fit_power_law(d, with_floor, bootstrap=50), fit_power_law(d, with_floor, floor=False)
    )
    assert choice.chosen.form == "data" and "lowers AICc" in choice.reason
    assert choice.chosen.params["E"] == pytest.approx(0.6, rel=0.1)

    d, pure = two_seeds(lambda d: 3.0 / d**0.3)
    choice = choose_form(fit_power_law(d, pure, bootstrap=50), fit_power_law(d, pure, floor=False))
    assert choice.chosen.form == "power" and "no floor" in choice.reason
    assert choice.chosen.params["beta"] == pytest.approx(0.3, rel=0.05)


def test_a_floor_at_its_bound_is_reported_as_not_identified_never_as_a_number():
    d, pure = two_seeds(lambda d: 3.0 / d**0.3)
    floor_fit = fit_power_law(d, pure, bootstrap=100)
    summary = fit_json(floor_fit, float(pure.min()))
    assert "E" in summary["not_identified"] and "would pin it" in summary["not_identified"]["E"]
    assert summary["E"] is None and summary["intervals"]["E"] is None
    assert summary["beta"] is not None  # the exponent is still measured
    json.dumps(summary, allow_nan=False)


def test_an_interval_running_off_to_infinity_is_not_identified():
    d, with_floor = two_seeds(lambda d: 0.6 + 8.0 / d**0.5)
    fit = fit_power_law(d, with_floor, bootstrap=20)
    infinite = dataclasses.replace(fit, boot_theta=fit.boot_theta.copy())
    infinite.boot_theta[0, 1] = 1e6  # one replicate's log B: B overflows, the interval's top is ∞
    assert "B" not in not_identified(fit, float(with_floor.min()))
    assert "unbounded" in not_identified(infinite, float(with_floor.min()))["B"]


def test_no_residual_degree_of_freedom_identifies_nothing():
    d = np.array([64.0, 256.0, 1024.0])
    fit = fit_power_law(d, [1.3, 1.0, 0.9], bootstrap=50)
    unknown = not_identified(fit, 0.9)
    assert set(unknown) == {"E", "B", "beta"}
    assert all("no residual degree of freedom" in why for why in unknown.values())


def test_extrapolation_refit_needs_a_residual_degree_of_freedom():
    d = np.array([64.0, 256.0, 1024.0, 4096.0])
    loss = 3.0 / d**0.3
    assert extrapolation_check(d, loss, bootstrap=20)["checks"] == []  # 3 points, 3 params
    assert "residual degree" in extrapolation_check(d, loss, bootstrap=20)["message"]
    power = extrapolation_check(d, loss, bootstrap=20, floor=False)  # 3 points, 2 params
    assert len(power["checks"]) == 1
    assert power["checks"][0]["predicted"] == pytest.approx(3.0 / 4096**0.3, rel=1e-3)


def row(family: str, params: float, d: int, seed: int, loss: float, **kw) -> ResultRow:
    kind = "neural" if params else "baseline"
    return ResultRow(
        trial=f"{family}-u{d}-seed{seed}",
        status="done",
        kind=kind,
        model_size=family,
        params=params or None,
        data_utterances=d,
        seed=seed,
        val_loss=loss,
        **kw,
    )


def test_a_one_seed_four_budget_family_is_checked_with_the_law_it_can_test():
    rows = [row("s", 1e5, d, 0, 3.0 / d**0.3 * (1 + 0.002 * i)) for i, d in enumerate(BUDGETS[::2])]
    analysis = analyse_results(rows, bootstrap=30)
    family = analysis["families"]["s"]
    assert family["fit"]["law"] == "B/D^β" and "E" not in family["fit"]
    assert set(family["fit"]["alternatives"]) == {"E + B/D^β", "B/D^β"}
    check = analysis["extrapolation"]["families"]["s"]
    assert check["ok"] and check["law"] == "B/D^β" and check["n_points"] == 3


def test_joint_parameters_the_sizes_cannot_pin_are_not_numbers():
    """Two sizes 2× apart that reach the same loss: A/N^α cannot be measured."""
    rows = [
        row(size, n, d, seed, float(noisy(np.array([3.0 / d**0.3]), 0.003, seed + d)[0]))
        for size, n in (("s", 1e5), ("m", 2e5))
        for d in BUDGETS
        for seed in (0, 1)
    ]
    joint = analyse_results(rows, bootstrap=50)["joint"]
    assert joint["ok"] and {"A", "alpha"} & set(joint["not_identified"])
    for name in joint["not_identified"]:
        assert joint[name] is None and joint["intervals"][name] is None
    assert len(joint["surface"]["loss"]) == len(joint["surface"]["n"])


def test_the_compute_optimal_allocation_needs_one_k():
    points = [
        {"trial": f"t{i}", "n": n, "d": d, "flops": 6 * n * d * (8 / d**0.5), "loss": 1 / d**0.1}
        for i, (n, d) in enumerate([(1e5, 64), (1e5, 4096), (1e6, 64), (1e6, 4096)])
    ]
    frontier = compute_frontier(points)
    assert frontier["optimal"] is None and frontier["k"] is None
    assert "varies 8.0×" in frontier["optimal_absent"]
    proportional = [p | {"flops": 6 * p["n"] * p["d"]} for p in points]
    assert compute_frontier(proportional)["k"] == pytest.approx(6.0)


def test_seed_figure_compares_with_the_best_baseline_and_carries_intervals():
    rows = []
    losses_by_budget = (
        (1024, (0.95, 0.90, 0.85, 1.00, 0.97)),
        (4096, (0.94, 0.85, 0.75, 0.99, 0.96)),
    )
    for d, losses in losses_by_budget:
        for family, params, loss in zip(
            ("s", "m", "l", "baseline", "concat"), (1, 10, 100, 0, 0), losses, strict=True
        ):
            for seed in (0, 1):
                value = loss + 0.002 * seed
                ci = (value / 2 - 0.01, value / 2 + 0.01)
                rows.append(row(family, params, d, seed, value, wer=value / 2, wer_ci=ci))
    check = seed_figure(rows)  # val_loss: rows carry no interval, so the seed spread
    assert check["order"] == ["l", "m", "s", "concat"] and check["baselines"] == [
        "baseline",
        "concat",
    ]
    assert check["order_holds"] and check["order_separated"]
    assert check["intervals_at_largest_budget"]["l"] == pytest.approx((0.75, 0.752))
    gain_lo, gain_hi = check["largest_gain_ci"]
    assert gain_lo < check["largest_gain"] < gain_hi
    wer = seed_figure(rows, metric="wer")  # the evaluation's interval, averaged over seeds
    assert wer["intervals_at_largest_budget"]["l"] == pytest.approx((0.3655, 0.3855))
    assert wer["order_separated"] is False  # s 0.47 and concat 0.48, each ± 0.01, overlap
