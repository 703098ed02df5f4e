"""One sweep per runs directory at a time: `runs/sweep.lock`.

Two drivers on one runs directory would train the same trial into the same directory and
write results.jsonl at once. The lock is an `fcntl.flock` on `sweep.lock` (released by the
kernel when its holder dies, however it dies) whose contents name the holder — host, PID,
sweep, start time — so a second sweep can say who has it. A clean exit empties the file;
contents found by whoever gets the lock next mean the last holder died holding it, and the
new holder says so. A holder on another host (a runs directory on shared storage, where
flock may not reach across machines) is never taken over: delete the file if it is dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["LOCK_NAME", "SweepLocked", "lock_holder", "runs_dir_lock"]

LOCK_NAME = "sweep.lock"


class SweepLocked(RuntimeError):
    """Another sweep holds the runs directory."""


def _holder_text(holder: dict[str, Any]) -> str:
    return (
        f"sweep {holder.get('sweep')!r}, pid {holder.get('pid')} on host {holder.get('host')}, "
        f"since {holder.get('started')}"
    )


def _read_holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 1 << 16)
    if not raw.strip():
        return None
    try:
        holder = json.loads(raw)
    except json.JSONDecodeError:
        return {"sweep": "?", "pid": "?", "host": "?", "started": f"(unreadable: {raw[:80]!r})"}
    return holder if isinstance(holder, dict) else None


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_holder(runs_dir: Path) -> tuple[bool, dict[str, Any] | None]:
    """Whether a sweep holds `runs_dir/sweep.lock` now, and the holder its contents name
    (None when the file is missing or empty). Not held with a holder named: that holder died
    without releasing it, or runs on another host (whose processes this one cannot see).

    Reads the contents and asks whether the named process lives, and never takes the flock
    itself: a sweep starting at that instant must not find the directory busy because
    somebody asked for its status. (A PID reused by an unrelated process reads as held.)"""
    try:
        raw = (runs_dir / LOCK_NAME).read_bytes()
    except FileNotFoundError:
        return False, None
    if not raw.strip():
        return False, None
    try:
        holder = json.loads(raw)
    except json.JSONDecodeError:
        return False, {"sweep": "?", "pid": "?", "host": "?", "started": "(unreadable)"}
    if not isinstance(holder, dict):
        return False, None
    here = holder.get("host") == socket.gethostname()
    return here and _alive(holder.get("pid")), holder


@contextlib.contextmanager
def runs_dir_lock(runs_dir: Path, sweep_name: str) -> Iterator[dict[str, Any]]:
    """Hold `runs_dir/sweep.lock` for the body; raise `SweepLocked` naming the holder when
    another sweep has it. Yields this holder's record."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd) or {}
            raise SweepLocked(
                f"{runs_dir} is in use by {_holder_text(holder)} ({path}); wait for it to "
                "finish, or stop it, or use another --runs-dir"
            ) from None
        _check_previous_holder(_read_holder(fd), path)
        me = {
            "sweep": sweep_name,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode() + b"\n")
        os.fsync(fd)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)  # a clean release leaves an empty file, never a stale name
    finally:
        os.close(fd)  # releases the flock


def _check_previous_holder(holder: dict[str, Any] | None, path: Path) -> None:
    """We got the flock, so no process on this host holds it. A recorded holder on this host
    died without releasing it: take over, saying so. One on another host may be alive."""
    if holder is None:
        return
    if holder.get("host") == socket.gethostname():
        state = "still running under that PID?" if _alive(holder.get("pid")) else "not running"
        print(
            f"warning: taking over the stale lock {path} of {_holder_text(holder)} ({state}; "
            "it did not release the lock: it was killed or crashed)",
            file=sys.stderr,
            flush=True,
        )
        return
    raise SweepLocked(
        f"{path} names {_holder_text(holder)}: a sweep on another machine. If it is no longer "
        f"running, delete {path}"
    )
