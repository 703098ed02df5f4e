"""What the fault drills are made of: real sweep processes in their own sessions, real
signals, a real `mlflow server`, and the counts that say whether anything was lost.

A sweep runs as `python -m scaling.cli sweep …` in a new session (`setsid`), so everything
it starts — Ray's GCS, raylets, workers, agents — can be found as its descendants or by its
session id, and ended by PID afterwards (Ray's agents outlive a SIGKILLed driver).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.tracking import RECORDED_TAG, record_key
from store.results_file import load_results

__all__ = [
    "Check",
    "DrillResult",
    "MlflowServer",
    "SweepProcess",
    "count_rows",
    "count_runs",
    "descendants_named",
    "end_session",
    "free_port",
    "wait_for",
]

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "sweeps" / "smoke.yaml"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class DrillResult:
    """One drill: what was broken, what happened, the books before and after."""

    drill: str
    broken: str
    outcome: str = ""
    rows_before: int | None = None
    rows_after: int | None = None
    runs_before: int | None = None
    runs_after: int | None = None
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, name: str, ok: bool, detail: Any = "") -> bool:
        self.checks.append(Check(name, bool(ok), str(detail)[:2000]))
        return bool(ok)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2
) -> None:
    """Poll until `predicate()`; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Processes


def descendants_named(pid: int, marker: str) -> list[int]:
    """PIDs of `pid`'s descendants whose command line contains `marker`."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if marker in " ".join(child.cmdline()) or marker in child.name():
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def session_pids(sid: int) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.pid != os.getpid():
                pids.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return pids


def end_session(sid: int, grace_s: float = 5.0) -> int:
    """SIGTERM, then SIGKILL, every process of session `sid` (one this harness started);
    returns how many there were."""
    pids = session_pids(sid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            break
    return len(pids)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------------------------------------
# Sweeps


class SweepProcess:
    """`voicescale sweep` on the smoke preset (plus `--set` overrides) in its own session."""

    def __init__(
        self,
        runs: Path,
        overrides: list[str],
        *,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
        log_name: str = "sweep",
    ) -> None:
        self.runs = runs
        runs.mkdir(parents=True, exist_ok=True)
        n = len(list(runs.glob(f"{log_name}*.log")))
        self.log_path = runs / f"{log_name}{n}.log"
        command = [sys.executable, "-m", "scaling.cli", "sweep", "--config", str(SMOKE)]
        command += ["--runs-dir", str(runs), *(extra or [])]
        for override in overrides:
            command += ["--set", override]
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self._log.flush()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pid, sig)
        self.process.wait(timeout=60)

    def end(self) -> None:
        """Stop whatever is left of this sweep's session (the sweep itself included)."""
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=60)
        end_session(self.pid)
        self._log.close()


def run_sweep(
    runs: Path, overrides: list[str], timeout_s: float = 900, **kw: Any
) -> tuple[int, str]:
    sweep = SweepProcess(runs, overrides, **kw)
    try:
        code = sweep.wait(timeout_s)
    finally:
        sweep.end()
    return code, sweep.log()


# ---------------------------------------------------------------------------------------------
# The drill trial and its checkpoints

TRIAL = "xs-u64-seed0"
KILL_STEPS, KILL_CHECKPOINT_EVERY = 300, 50
# One xs trial long enough (~20 s of steps on one core) to be hit mid-training, checkpointed
# every 50 steps, judged on one sentence per held-out voice.
KILL_TRIAL = [
    "grid.model_sizes=[xs]",
    "grid.data_budgets=[{utterances: 64}]",
    f"trial.training.steps={KILL_STEPS}",
    f"trial.training.checkpoint_every={KILL_CHECKPOINT_EVERY}",
    "trial.training.eval_every=100",
    "trial.eval.sentences_per_speaker=1",
    "trial.eval.bootstrap=20",
    "trial.eval.audio_samples=0",
    "trial.eval.quality=[]",
]


def checkpoints(runs: Path, sweep: str, trial: str = TRIAL) -> list[str]:
    """The trial's checkpoints Ray Train has registered (and would resume from): a directory
    on disk is not enough — a worker killed before its report reached the controller leaves
    one that a restart ignores."""
    snapshot = runs / sweep / "trials" / trial / "checkpoint_manager_snapshot.json"
    try:
        results = json.loads(snapshot.read_text())["checkpoint_results"]
    except (OSError, json.JSONDecodeError, KeyError):
        return []
    names = (r.get("checkpoint_dir_name", "") for r in results)
    return sorted(n for n in names if n.startswith("step"))


def has_checkpoint(runs: Path, sweep: str, step: int) -> Callable[[], bool]:
    return lambda: any(int(n[4:]) >= step for n in checkpoints(runs, sweep))


# ---------------------------------------------------------------------------------------------
# The books: rows and MLflow runs


def rows(runs: Path, sweep: str) -> dict[str, dict[str, Any]]:
    """The sweep's rows as results.jsonl holds them (validated by the same reader)."""
    return {n: r.to_json() for n, r in load_results(runs / sweep / "results.jsonl").items()}


def count_rows(runs: Path, sweep: str) -> int:
    path = runs / sweep / "results.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def mlflow_runs(uri: str, sweep: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(f"voicescale-{sweep}")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], max_results=10000)


def count_runs(uri: str, sweep: str) -> int:
    return len(mlflow_runs(uri, sweep))


def sqlite_uri(runs: Path) -> str:
    return f"sqlite:///{runs / 'mlflow.db'}"


def books_check(result: DrillResult, runs: Path, sweep: str, uri: str, trials: int) -> None:
    """Every trial exactly once in results.jsonl and in MLflow, no run left RUNNING."""
    lines = [
        json.loads(line)["trial"]
        for line in (runs / sweep / "results.jsonl").read_text().splitlines()
        if line.strip()
    ]
    result.check(
        "each trial exactly once in results.jsonl",
        len(lines) == trials and len(set(lines)) == trials,
        lines,
    )
    every = mlflow_runs(uri, sweep)
    children = [r.data.tags.get("voicescale.trial") for r in every if _role(r) == "trial"]
    parents = [r for r in every if _role(r) == "sweep"]
    result.check(
        "each trial exactly once in MLflow",
        sorted(children) == sorted(set(lines)) and len(parents) == 1,
        f"children {sorted(children)}, parents {len(parents)}",
    )
    running = [r.info.run_name for r in every if r.info.status == "RUNNING"]
    result.check("no MLflow run left RUNNING", not running, running)
    table = rows(runs, sweep)

    def recorded(run: Any) -> bool:
        row = table.get(run.data.tags.get("voicescale.trial"), {})
        expected = record_key(row.get("status", "?"), row.get("finished_at"))
        return run.data.tags.get(RECORDED_TAG) == expected

    unrecorded = [r.info.run_name for r in every if _role(r) == "trial" and not recorded(r)]
    result.check("every child run holds its row's final record", not unrecorded, unrecorded)
    ids = {r.info.run_id for r in every}
    dangling = [n for n, row in table.items() if row.get("mlflow_run_id") not in ids]
    result.check("every row names its MLflow run", not dangling, dangling)
    result.rows_after, result.runs_after = len(lines), len(every)


def _role(run: Any) -> str | None:
    return run.data.tags.get("voicescale.role")


# ---------------------------------------------------------------------------------------------
# A real MLflow server


class MlflowServer:
    """`mlflow server` on 127.0.0.1 in its own session: killed hard (the whole process group,
    SIGKILL) and restarted on the same port and store, as an outage would."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root, self.port = root, port or free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 120) -> None:
        log = (self.root / f"server{self.starts}.log").open("w")
        self.starts += 1
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.root / 'server.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        wait_for(self.healthy, timeout_s, f"mlflow server on port {self.port}", poll_s=0.5)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: see {self.root}") from None
            return False

    def kill(self) -> None:
        """SIGKILL the server's whole process group."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        end_session(self.process.pid)
        self.process = None


@contextmanager
def mlflow_server(root: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(root)
    server.start()
    try:
        yield server
    finally:
        server.kill()
