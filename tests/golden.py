"""Golden files: outputs that must not change unless someone means them to (`tests/data/golden`).

Floating point differs between CPU types (see README, Reproducibility), so measured numbers
are compared to the bit only on the kind of machine that wrote the files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


def machine_fingerprint() -> dict[str, str]:
    """What decides the smoke sweep's floating point: the CPU, its instruction sets, torch."""
    import platform

    import torch

    info = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = " ".join(sorted(info.get("flags", "").split()))
    return {
        "cpu": info.get("model name", platform.processor()),
        "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:12],
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def recorded_machine() -> dict[str, str]:
    """The fingerprint of the machine that wrote the golden files."""
    return json.loads((GOLDEN / "machine.json").read_text())


def assert_same(actual, expected, rel: float, where: str = "") -> None:
    """Equal, floats within `rel` (0: to the bit), naming the first place they differ."""
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        assert actual == expected or (rel and abs(actual - expected) <= rel * abs(expected)), (
            f"{where}: {actual!r} != {expected!r}"
        )
    elif isinstance(expected, dict) and isinstance(actual, dict):
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], rel, f"{where}.{key}")
    elif isinstance(expected, list) and isinstance(actual, list):
        assert len(actual) == len(expected), f"{where}: {len(actual)} items != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, rel, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def assert_same_structure(actual, expected, where: str = "") -> None:
    """The same keys (in order) and list lengths all the way down; values are not compared."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), (
            f"{where}: keys {list(actual) if isinstance(actual, dict) else actual!r} != "
            f"{list(expected)}"
        )
        for key in expected:
            assert_same_structure(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: length"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_structure(a, e, f"{where}[{i}]")
