"""Long-lived judges: Ray actors that load the judges, the held-out set and its ceilings once
and then judge every trial's export.

Judging used to start from nothing in every trial — judges, corpus manifest, log-mels and
the reference ceilings were loaded by the trial's rank-0 worker, a process that lives for one
trial. A `JudgeService` actor keeps them (`HeldOutSet`) for the whole sweep. There is one per
node and concurrent evaluation ("slot"): slot k on a node is the named actor
`judges/<sweep>/<node>/<k>`, leased by taking a lock file on that node, so two trials never
queue behind one actor while another sits idle.

The actor holds no Ray resources: the caller (a trial's rank-0 worker, or the baseline's task)
holds its CPUs — and GPU, which the actor can see because Ray leaves CUDA_VISIBLE_DEVICES
alone for actors that ask for none — and waits while the actor works, so evaluation uses the
trial's share of the machine, as before, and the judges' threads are set to that share
(`torch.set_num_threads`, which DNSMOS's onnxruntime sessions follow: `eval.quality`). The
actors are detached (they outlive the trial that created them); the sweep removes its own at
start and at the end (`remove_judges`)."""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from eval.result import EvalFailure, JudgeOutcome
from training.config import EvalConfig, config_hash

__all__ = [
    "JUDGE_NAMESPACE",
    "JudgeService",
    "judge_on_service",
    "prepare_judges",
    "remove_judges",
]

JUDGE_NAMESPACE = "voicescale"
MAX_SLOTS = 256
"""More concurrent evaluations on one node than this is a configuration error."""


class JudgeService:
    """Ray actor body: judges exports, keeping one `HeldOutSet` per (corpus, evaluation
    settings, features) for as long as it lives."""

    def __init__(self) -> None:
        self._heldout: dict[str, Any] = {}
        self.evaluations = 0
        self.builds = 0

    def evaluate(
        self, export_dir: str, corpus_root: str, out_dir: str, cfg: EvalConfig, threads: int
    ) -> JudgeOutcome:
        """Judge one export (see `eval.evaluate_checkpoint`); a failure is returned, not
        raised, like `cluster.evaluation.ExportJudge`."""
        import torch

        from eval.evaluate_checkpoint import evaluate_checkpoint
        from training.inference import Synthesizer, export_features

        started = time.perf_counter()
        torch.set_num_threads(max(1, threads))
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            heldout = self._heldout_for(corpus_root, cfg, export_features(Path(export_dir)))
            synthesizer = Synthesizer.load(export_dir, heldout.vocoder, cfg=cfg)
            self.evaluations += 1
            result = evaluate_checkpoint(
                export_dir, corpus_root, out_dir, cfg=cfg, synthesizer=synthesizer, heldout=heldout
            )
            return replace(result, eval_seconds=time.perf_counter() - started)
        except Exception as err:
            return EvalFailure(f"{type(err).__name__}: {err}", traceback.format_exc())

    def prepare(self, corpus_root: str, cfg: EvalConfig, features: Any, threads: int) -> float:
        """Build the held-out set now — the judges, and the reference ceilings, which are
        computed once and cached on disk for every judge of the corpus — so the first trial
        judged here does not wait for them. Returns the seconds it took."""
        import torch

        torch.set_num_threads(max(1, threads))
        started = time.perf_counter()
        self._heldout_for(corpus_root, cfg, features).reference_seconds = 0.0  # paid here
        return time.perf_counter() - started

    def _heldout_for(self, corpus_root: str, cfg: EvalConfig, features: Any) -> Any:
        from eval.evaluate_checkpoint import HeldOutSet

        key = f"{Path(corpus_root).resolve()}:{config_hash(cfg)}:{config_hash(features)}"
        if key not in self._heldout:
            started = time.perf_counter()
            self._heldout[key] = HeldOutSet.build(corpus_root, cfg, features)
            self._heldout[key].reference_seconds = time.perf_counter() - started
            self.builds += 1
        return self._heldout[key]

    def stats(self) -> dict[str, int]:
        """How many exports it judged and how many held-out sets it built (for tests and
        the benchmark)."""
        return {"evaluations": self.evaluations, "builds": self.builds, "pid": os.getpid()}


def judge_on_service(
    service: str, export_dir: Path, corpus_root: str, out_dir: str, cfg: EvalConfig, threads: int
) -> JudgeOutcome:
    """Judge `export_dir` on a free judge slot of this node, waiting for the result. A judge
    actor that died (killed, out of memory) is replaced once."""
    import ray
    from ray.exceptions import RayActorError

    started = time.perf_counter()
    node = ray.get_runtime_context().get_node_id()
    with _leased_slot(service, node) as slot:
        for attempt in range(2):
            actor = _judge_actor(service, node, slot)
            call = actor.evaluate.remote(str(export_dir), corpus_root, out_dir, cfg, threads)
            try:
                outcome = ray.get(call)
                break
            except RayActorError as err:
                if attempt == 1:
                    return EvalFailure(f"the judge actor died twice: {err}")
    if isinstance(outcome, EvalFailure):
        return outcome
    # The trial's view: starting (or reaching) the actor is evaluation time too.
    waited = time.perf_counter() - started
    return replace(
        outcome,
        eval_seconds=waited,
        reference_seconds=outcome.reference_seconds + waited - outcome.eval_seconds,
    )


def prepare_judges(service: str, corpus_root: str, cfg: EvalConfig, features: Any) -> Any:
    """Start this node's first judge actor and have it build the held-out set (see
    `JudgeService.prepare`) while the sweep's first trials start; returns the call's
    ObjectRef (its result: the seconds the preparation took)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    return _judge_actor(service, node, 0).prepare.remote(corpus_root, cfg, features, 1)


def remove_judges(service: str) -> int:
    """End this sweep's judge actors (all nodes); returns how many there were."""
    import ray
    from ray.util import list_named_actors

    prefix = f"judges/{service}/"
    removed = 0
    for entry in list_named_actors(all_namespaces=True):
        if entry["namespace"] == JUDGE_NAMESPACE and entry["name"].startswith(prefix):
            try:
                ray.kill(ray.get_actor(entry["name"], namespace=JUDGE_NAMESPACE))
                removed += 1
            except ValueError:  # already gone
                pass
    return removed


def _judge_actor(service: str, node: str, slot: int):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return (
        ray.remote(JudgeService)
        .options(
            name=f"judges/{service}/{node}/{slot}",
            namespace=JUDGE_NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_restarts=1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        )
        .remote()
    )


@contextmanager
def _leased_slot(service: str, node: str) -> Iterator[int]:
    """The lowest judge slot of this node no other process holds; held until the block
    ends. The lock files are node-local (the temp directory), and the kernel releases a
    dead holder's lock."""
    from filelock import FileLock, Timeout

    directory = Path(tempfile.gettempdir()) / "voicescale-judges"
    directory.mkdir(exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in service)
    for slot in range(MAX_SLOTS):
        lock = FileLock(str(directory / f"{safe}-{node[:16]}-{slot}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            yield slot
        finally:
            lock.release()
        return
    raise RuntimeError(f"more than {MAX_SLOTS} evaluations at once on node {node}")
