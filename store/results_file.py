"""`runs/<sweep>/results.jsonl`: one row per trial, the single source of truth for fits,
the report and promotion.

Rows are only ever written by the sweep driver, one at a time. A trial has at most one row:
recording a trial that already has one (a failed trial that was retried) rewrites the file
atomically with the new row in place of the old one. `done` and `diverged` rows are final —
a re-run of the sweep skips those trials; `failed` ones are tried again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from store.records import ResultRow, RowError

__all__ = ["ResultsError", "load_results", "load_rows", "record_result", "repair_torn_tail"]


class ResultsError(ValueError):
    """results.jsonl is unreadable or inconsistent with the sweep being run."""


def load_results(path: Path) -> dict[str, ResultRow]:
    """Rows by trial name. A malformed line is an error naming file and line: a silently
    dropped row would make the sweep train that trial again."""
    rows: dict[str, ResultRow] = {}
    if not path.exists():
        return rows
    text = path.read_text()
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            torn = number == len(lines) and not text.endswith("\n")
            hint = " — a torn last line; `voicescale sweep` sets it aside" if torn else ""
            raise ResultsError(f"{path}:{number}: not a JSON object ({err.msg}){hint}") from None
        if not isinstance(data, dict) or "trial" not in data or "status" not in data:
            raise ResultsError(f"{path}:{number}: a row needs 'trial' and 'status'")
        try:
            row = ResultRow.from_json(data)
        except RowError as err:
            raise ResultsError(f"{path}:{number}: {err}") from None
        if row.trial in rows:
            raise ResultsError(f"{path}:{number}: trial {row.trial!r} appears twice")
        rows[row.trial] = row
    return rows


def load_rows(path: Path) -> list[ResultRow]:
    """The rows of results.jsonl in file order."""
    return list(load_results(path).values())


def repair_torn_tail(path: Path) -> Path | None:
    """Set aside a torn last line — one a crash or a full disk cut off mid-write — so the
    sweep can go on; returns where it went (`results.jsonl.torn`), or None if nothing was
    torn. Rows are written whole and newline-terminated, so only a last line without its
    newline can be torn; one that still parses lost only the newline and is kept. Any
    other invalid line is left for `load_results` to report: it was not a crash."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return None
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        complete = isinstance(json.loads(tail), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        complete = False
    if complete:
        _append_durably(path, b"\n")
        return None
    torn = path.with_name(path.name + ".torn")
    with torn.open("ab") as f:
        f.write(tail + b"\n")
        f.flush()
        os.fsync(f.fileno())
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_bytes(data[:cut])
    _fsync(tmp)
    tmp.replace(path)
    return torn


def record_result(path: Path, row: ResultRow) -> None:
    """Append `row`, or replace the trial's earlier row; durable before it returns."""
    rows = load_results(path)
    if row.trial not in rows:
        _append_durably(path, _line(row).encode())  # one write: a crash can only cut its end off
        return
    rows[row.trial] = row
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for existing in rows.values():
            f.write(_line(existing))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _line(row: ResultRow) -> str:
    return json.dumps(row.to_json()) + "\n"


def _append_durably(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())
