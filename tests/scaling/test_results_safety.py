"""results.jsonl after a crash, and the one-sweep-per-runs-directory lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from store.records import ResultRow
from store.results_file import ResultsError, load_results, record_result, repair_torn_tail
from store.runs_lock import LOCK_NAME, SweepLocked, runs_dir_lock


def write_rows(path: Path, *names: str) -> bytes:
    for name in names:
        record_result(path, ResultRow(trial=name, status="done", val_loss=1.0))
    return path.read_bytes()


def test_a_torn_last_line_is_set_aside_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    intact = write_rows(path, "a", "b")
    path.write_bytes(intact + b'{"trial": "c", "sta')  # a crash mid-write
    with pytest.raises(ResultsError, match=r"results.jsonl:3: .*torn last line"):
        load_results(path)
    torn = repair_torn_tail(path)
    assert torn == tmp_path / "results.jsonl.torn"
    assert torn.read_bytes() == b'{"trial": "c", "sta\n'
    assert path.read_bytes() == intact and list(load_results(path)) == ["a", "b"]
    record_result(path, ResultRow(trial="c", status="done"))  # the next append is a clean line
    assert list(load_results(path)) == ["a", "b", "c"]


def test_a_complete_last_line_that_lost_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    intact = write_rows(path, "a", "b")
    path.write_bytes(intact[:-1])
    assert repair_torn_tail(path) is None
    assert path.read_bytes() == intact
    assert not (tmp_path / "results.jsonl.torn").exists()


def test_an_invalid_line_in_the_middle_is_an_error_not_a_repair(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    lines = write_rows(path, "a", "b").splitlines(keepends=True)
    path.write_bytes(lines[0] + b"{garbage\n" + lines[1])
    assert repair_torn_tail(path) is None
    with pytest.raises(ResultsError, match=r"results.jsonl:2: not a JSON object") as err:
        load_results(path)
    assert "torn" not in str(err.value)


def test_the_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    with runs_dir_lock(tmp_path, "smoke") as me:
        assert me["pid"] == os.getpid()
        busy = pytest.raises(SweepLocked, match=rf"sweep 'smoke', pid {os.getpid()} on host")
        with busy, runs_dir_lock(tmp_path, "other"):
            pass
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: no stale name left
    with runs_dir_lock(tmp_path, "again"):
        pass


def test_another_process_holding_the_lock_is_refused(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from store.runs_lock import "
            "runs_dir_lock\nwith runs_dir_lock(Path(sys.argv[1]), 'held'):\n"
            "    print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SweepLocked, match=rf"pid {holder.pid}"), runs_dir_lock(tmp_path, "2nd"):
            pass
    finally:
        holder.kill()
        holder.wait()
    # Killed while holding it: the kernel released the flock, the file still names it.
    with runs_dir_lock(tmp_path, "third"):
        pass


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = {
        "sweep": "old",
        "pid": int(dead.stdout),
        "host": socket.gethostname(),
        "started": "yesterday",
    }
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    with runs_dir_lock(tmp_path, "new"):
        pass
    warning = capsys.readouterr().err
    assert "taking over the stale lock" in warning and f"pid {stale['pid']}" in warning


def test_a_lock_held_on_another_host_is_never_taken_over(tmp_path: Path) -> None:
    elsewhere = {"sweep": "x", "pid": 1, "host": "some-other-host", "started": "now"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(elsewhere))
    with pytest.raises(SweepLocked, match=r"some-other-host.*delete"), runs_dir_lock(tmp_path, "n"):
        pass
