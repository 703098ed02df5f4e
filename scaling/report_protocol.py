"""The report's section on what the data axis means: the training protocol, the voices each
budget draws, how many passes trials made and why they stopped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scaling.formatting import finite
from scaling.report_html import esc, note, table
from store.records import ResultRow

__all__ = ["PROTOCOL_TEXT", "protocol_section"]

PROTOCOL_TEXT = {
    "converged": (
        "converged — each trial trained until its loss on dev voices (held out from training "
        "and from evaluation) stopped improving, capped at a number of epochs; the best "
        "checkpoint was judged. The x-axis is the amount of data."
    ),
    "steps": (
        "steps — a fixed step rule (or fixed steps); when steps grow with the budget, more "
        "data also means more optimiser updates, so the x-axis carries compute with it."
    ),
    "compute": (
        "compute — a fixed number of utterances seen whatever the budget (small budgets are "
        "repeated, large ones not seen whole): the x-axis is unique data at fixed compute."
    ),
    "fit": "fit — closed-form traditional methods: no iterations, nothing to converge.",
}


def protocol_section(rows: Sequence[ResultRow]) -> str:
    """Protocols used, then per budget: voices, epochs and stop reasons of the neural trials,
    and a note on trials stopped by the epoch cap (still improving there)."""
    done = [r for r in rows if r.status == "done"]
    parts = ['<section id="protocol"><h2>What "more data" means here</h2>']
    protocols = sorted({r.protocol for r in done if r.protocol})
    if not protocols:
        return "".join(
            [*parts, note("The rows do not record their training protocol."), "</section>"]
        )
    parts.append(
        "<ul>" + "".join(f"<li>{esc(PROTOCOL_TEXT.get(p, p))}</li>" for p in protocols) + "</ul>"
    )
    parts.append(_budget_table(done))
    capped = [r for r in done if r.kind == "neural" and r.stop_reason == "max_epochs"]
    if capped and "converged" in protocols:
        names = ", ".join(sorted(r.trial for r in capped))
        parts.append(
            note(
                f"{len(capped)} neural trial(s) stopped at the epoch cap, still improving on "
                f"the dev voices: there the measured loss is compute-limited, not data-limited "
                f"({names})."
            )
        )
    parts.append("</section>")
    return "".join(parts)


def _budget_table(rows: Sequence[ResultRow]) -> str:
    by_budget: dict[int, list[ResultRow]] = {}
    for row in rows:
        if row.data_utterances:
            by_budget.setdefault(int(row.data_utterances), []).append(row)
    body = []
    for budget, at in sorted(by_budget.items()):
        voices = sorted({r.train_speakers for r in at if r.train_speakers})
        neural = [r for r in at if r.kind == "neural"]
        epochs = [float(r.epochs) for r in neural if finite(r.epochs)]
        reasons = Counter(r.stop_reason or "unknown" for r in neural)
        body.append(
            [
                f"{budget:,}",
                "–".join(str(v) for v in (voices[0], voices[-1]))
                if len(voices) > 1
                else (str(voices[0]) if voices else "—"),
                str(len(neural)),
                f"{min(epochs):.3g}–{max(epochs):.3g}" if epochs else "—",
                ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) or "—",
            ]
        )
    if not body:
        return ""
    headers = ["budget (utterances)", "training voices", "neural trials", "epochs", "stopped"]
    return table(headers, body)
