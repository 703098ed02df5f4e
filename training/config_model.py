"""The model-size dial: `ModelConfig` and the ladder of named sizes (`MODEL_LADDER`).

Import these from `training.config` (which re-exports them).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from training.config_io import Fraction, Positive, RuleError, frozen_config

__all__ = ["MODEL_LADDER", "ModelConfig"]


def _rung(width: int, depth: int) -> dict[str, int]:
    """A ladder rung: the speaker encoder grows with the model at half its width."""
    return {"width": width, "depth": depth, "speaker_channels": max(8, width // 2 // 4 * 4)}


# One dial: width, with depth growing slowly. xs-l is the CPU ladder (~100x in parameters,
# l at ~0.4 s per batch-16 step on one core); xl and up are for GPUs (xxl > 100 M parameters).
_RUNGS: dict[str, dict[str, int]] = {
    "xs": _rung(16, 2),
    "s": _rung(32, 2),
    "m": _rung(96, 3),
    "l": _rung(192, 4),
    "xl": _rung(512, 6),
    "xxl": _rung(1024, 12),
    "xxxl": _rung(1536, 16),
}
_SHORT = {"width": "w", "depth": "d", "speaker_channels": "c"}


@frozen_config
class ModelConfig:
    """One point on the model-size dial: `size` names a rung of `MODEL_LADDER`.

    The rule: width, depth and speaker_channels left out (or null) take the rung's values. One
    given as well overrides that value only — the others still come from the rung — and, if it
    differs from the rung, is an *override*: listed by `overrides`, written into the trial's
    name (`xs_w32-u64-seed0`, never mistaken for plain xs) and, being in the config, into its
    `config_hash`. A size not on the ladder must give all three. `with_overrides` and `replace`
    derive the rung's values afresh, so `--set model.size=m` gives m's width."""

    size: Annotated[str, Field(pattern=r"^[a-z0-9]+$")] = "s"
    width: Positive | None = None
    """Channels of the phoneme encoder and mel decoder."""
    depth: Positive | None = None
    """Residual blocks in each of the encoder and decoder."""
    speaker_channels: Annotated[int, Field(ge=8, multiple_of=4)] | None = None
    """Channels of the ECAPA-TDNN speaker encoder (ladder: half the width, at least 8)."""
    kernel_size: Annotated[int, Field(ge=1)] = 5
    dropout: Fraction = 0.1

    def __post_init__(self) -> None:
        rung = _RUNGS.get(self.size)
        if rung is None:
            missing = [key for key in _SHORT if getattr(self, key) is None]
            if missing:
                raise RuleError(
                    missing[0],
                    f"required: size {self.size!r} is not on the ladder ({', '.join(_RUNGS)}), "
                    f"so it needs {', '.join(_SHORT)} (missing: {', '.join(missing)})",
                )
            return
        for key, value in rung.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)  # frozen: resolved once, here

    @property
    def overrides(self) -> dict[str, int]:
        """The values that differ from the rung of `size` (empty for a plain rung)."""
        rung = _RUNGS.get(self.size, {})
        return {k: getattr(self, k) for k, v in rung.items() if getattr(self, k) != v}

    @property
    def label(self) -> str:
        """`size`, plus the overrides if any: `xs`, `xs_w32`, `m_w128d4`."""
        tail = "".join(f"{_SHORT[k]}{v}" for k, v in self.overrides.items())
        return f"{self.size}_{tail}" if tail else self.size

    def _derived_fields(self) -> tuple[str, ...]:
        """The fields that hold the rung's values (re-derived when `size` changes)."""
        rung = _RUNGS.get(self.size, {})
        return tuple(k for k, v in rung.items() if getattr(self, k) == v)


MODEL_LADDER: dict[str, ModelConfig] = {size: ModelConfig(size=size) for size in _RUNGS}
