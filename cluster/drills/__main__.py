"""`python -m cluster.drills [--work DIR] [--only NAME ...]`: run the fault drills, print a
table — drill, what was broken, outcome, rows and MLflow runs before → after, nothing lost —
and exit non-zero if any check failed."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from pathlib import Path

from cluster.drills.harness import DrillResult
from cluster.drills.scenarios import DRILLS


def _cell(before: int | None, after: int | None) -> str:
    return f"{'–' if before is None else before} → {'–' if after is None else after}"


def format_table(results: list[DrillResult]) -> str:
    header = ("drill", "what was broken", "outcome", "rows", "MLflow runs", "nothing lost", "s")
    lines = [header]
    for r in results:
        lines.append(
            (
                r.drill,
                r.broken,
                r.outcome,
                _cell(r.rows_before, r.rows_after),
                _cell(r.runs_before, r.runs_after),
                "✓" if r.passed else f"✗ ({len(r.failures)} checks failed)",
                f"{r.seconds:.0f}",
            )
        )
    out = []
    for cells in lines:
        out.append("| " + " | ".join(cells) + " |")
        if cells is header:
            out.append("|" + "|".join("---" for _ in header) + "|")
    for r in results:
        for check in r.failures:
            out.append(f"  ✗ {r.drill}: {check.name} — {check.detail[-400:]}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.drills", description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("runs/drills"))
    parser.add_argument("--only", nargs="*", choices=sorted(DRILLS), help="run only these")
    args = parser.parse_args(argv)
    names = args.only or list(DRILLS)
    if "torn" in names and "diverge" not in names:
        names.insert(names.index("torn"), "diverge")  # torn reuses diverge's sweep
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = []
    for name in names:
        print(f"drill {name} …", flush=True)
        started = time.monotonic()
        try:
            result = DRILLS[name](work)
        except Exception as err:  # a drill that could not even run is a failed drill
            result = DrillResult(name, "(did not run to the end)")
            result.check("the drill ran", False, f"{err}\n{traceback.format_exc()[-1500:]}")
        result.seconds = time.monotonic() - started
        results.append(result)
        print(
            f"drill {name}: {'passed' if result.passed else 'FAILED'} ({result.seconds:.0f} s)",
            flush=True,
        )
    print(format_table(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
