"""A trial's own log file: what its processes print goes to `trials/<trial>/logs/`, not the
console.

Ray Train, DeepSpeed, torch and our loop all write to the process's stdout and stderr, some
from C++ (DeepSpeed's op builder, torch's warnings). Swapping `sys.stdout` would miss those, so
the capture works on the file descriptors 1 and 2 themselves: for the duration of the block
they point at the trial's log file, and Ray, which forwards a worker's output to the driver by
tailing what reaches those descriptors, has nothing to forward. With `echo` (the sweep's `-v`)
a thread copies everything to the original descriptors as well.

The file is opened for append: a resumed trial, or a second rank on the same shared
directory, adds to it instead of erasing what an earlier attempt said.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TrialLog", "captured_output"]

ECHO_JOIN_S = 5.0
"""How long the echo thread may take to drain the pipe once the block ends (a child process
that inherited the pipe keeps it open; the thread is a daemon and is then left behind)."""


@dataclass(frozen=True)
class TrialLog:
    """Where one trial's processes log, and whether they also echo to the console."""

    directory: str
    """`runs/<sweep>/trials/<trial>/logs` (on the sweep's shared storage)."""
    echo: bool = False

    def path(self, role: str) -> Path:
        """The file for one process of the trial: `driver`, `rank0`, `baseline`, …"""
        return Path(self.directory) / f"{role}.log"


@contextmanager
def captured_output(log: TrialLog | None, role: str) -> Iterator[Path | None]:
    """Point this process's stdout and stderr at `log.path(role)` for the block (yields the
    path; with `log` None, changes nothing and yields None)."""
    if log is None:
        yield None
        return
    path = log.path(role)
    path.parent.mkdir(parents=True, exist_ok=True)
    _flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    sink = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    echo = _EchoThread(sink, saved[1]) if log.echo else None
    target = echo.write_end if echo else sink
    try:
        for fd in (1, 2):
            os.dup2(target, fd)
        yield path
    finally:
        _flush()
        for fd, original in saved.items():
            os.dup2(original, fd)
            os.close(original)
        if echo is not None:
            echo.close()
        os.close(sink)


class _EchoThread:
    """Copies what is written into a pipe to the log file and to the console."""

    def __init__(self, sink: int, console: int) -> None:
        self.read_end, self.write_end = os.pipe()
        self.sink, self.console = sink, os.dup(console)
        self.thread = threading.Thread(target=self._pump, name="trial-log-echo", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while chunk := os.read(self.read_end, 1 << 16):
            os.write(self.sink, chunk)
            os.write(self.console, chunk)

    def close(self) -> None:
        os.close(self.write_end)  # with fds 1 and 2 restored, the pipe's last writer
        self.thread.join(ECHO_JOIN_S)
        if not self.thread.is_alive():  # else the thread still needs both
            os.close(self.read_end)
            os.close(self.console)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(AttributeError, ValueError, OSError):  # closed or detached
            stream.flush()
