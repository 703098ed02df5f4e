"""The report says what the data axis means: protocol, voices per budget, epochs, stops."""

from __future__ import annotations

from scaling.report_protocol import protocol_section
from store.records import ResultRow


def row(trial: str, budget: int, stop: str | None, epochs: float | None, **kw) -> ResultRow:
    return ResultRow(
        trial=trial,
        status="done",
        data_utterances=budget,
        stop_reason=stop,
        epochs=epochs,
        train_speakers=32,
        **kw,
    )


def test_the_section_counts_stops_and_names_the_trials_the_cap_cut_short():
    rows = [
        row("s-u32-seed0", 32, "converged", 5.0, protocol="converged"),
        row("l-u32-seed0", 32, "converged", 7.5, protocol="converged"),
        row("l-u2048-seed0", 2048, "max_epochs", 8.0, protocol="converged"),
        row("baseline-u2048-seed0", 2048, None, None, protocol="fit", kind="baseline"),
    ]
    page = protocol_section(rows)
    assert "converged — each trial trained until" in page and "closed-form" in page
    assert "<td>5–7.5</td>" in page and "2 converged" in page and "1 max_epochs" in page
    assert "1 neural trial(s) stopped at the epoch cap" in page and "l-u2048-seed0" in page
    assert "training voices" in page and "<td>32</td>" in page


def test_rows_without_a_protocol_say_so():
    page = protocol_section([ResultRow(trial="old", status="done", data_utterances=64)])
    assert "do not record their training protocol" in page
