"""The machinery under `training.config`: building blocks, conversion, hashing, loading, overrides.

Import these from `training.config` (which re-exports them); this module knows nothing of the
particular configs, only how every config is built, checked, read and written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

__all__ = [
    "ConfigError",
    "RuleError",
    "apply_overrides",
    "config_hash",
    "from_dict",
    "load_config",
    "read_config_file",
    "replace",
    "repo_configs_dir",
    "to_dict",
    "with_overrides",
]

# Strict: "3" is not an int and true is not a number; unknown keys are errors.
_STRICT = ConfigDict(extra="forbid", strict=True)


def frozen_config(cls):
    """Make `cls` a frozen, validated dataclass."""
    return _pydantic_dataclass(frozen=True, config=_STRICT)(cls)


Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""


class RuleError(ValueError):
    """A rule across fields is broken; raised in `__post_init__`, it names the offending
    `key` (dotted, relative to the config that checks it), so errors read
    `file: trial.training.batch_size: must be a multiple of ... (got 12)`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists); `from_dict` inverts it exactly."""
    return TypeAdapter(type(config)).dump_python(config, mode="json")


def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "<dict>") -> T:
    """Build and validate `cls` from plain data; errors name `source` and the dotted key."""
    try:
        # JSON mode: strict types, but lists are accepted for tuples and ints for floats.
        return TypeAdapter(cls).validate_json(json.dumps(data), strict=True)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None
    except TypeError as err:  # data that is not JSON-able (e.g. a YAML date)
        raise ConfigError(f"{source}: {err}") from None


def config_hash(config: Any) -> str:
    """Stable 12-hex-digit digest of a config's canonical JSON."""
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file, unvalidated; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not valid UTF-8") from None
    try:
        data = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    return data


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a YAML file into `cls`; every error names the file and the key."""
    return from_dict(cls, read_config_file(path), source=str(path))


def apply_overrides(
    data: dict[str, Any], overrides: list[str], *, source: str = "--set"
) -> dict[str, Any]:
    """Set `a.b.c=value` items (value parsed as YAML) in plain config data, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: expected key=value, got {item!r}")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{source}: {key}: {part!r} is not a section")
            node = node[part]
        node[leaf] = yaml.load(raw, Loader=_YamlLoader)
    return data


def with_overrides(config: T, overrides: list[str], *, source: str = "--set") -> T:
    """Apply `a.b.c=value` overrides (value parsed as YAML) and re-validate.

    Values a config derived from another field (a model's width from its size: see
    `_derived_fields`) are derived again, so `model.size=m` gives m's width, not the old one."""
    data = apply_overrides(_without_derived(config, to_dict(config)), overrides, source=source)
    return from_dict(type(config), data, source=source)


def replace(config: T, **changes: Any) -> T:
    """`dataclasses.replace` that re-derives derived fields (as `with_overrides` does) and
    reports failures as `ConfigError`."""
    derived = set(_derived_fields(config)) - set(changes)
    kept = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)  # type: ignore[arg-type]
        if f.init and f.name not in derived
    }
    try:
        return type(config)(**{**kept, **changes})
    except ValidationError as err:
        raise ConfigError(_describe(err, type(config).__name__)) from None


def repo_configs_dir() -> Path:
    """The repository's `configs/` directory (presets ship with the source tree)."""
    return Path(__file__).resolve().parent.parent / "configs"


def _derived_fields(config: Any) -> tuple[str, ...]:
    """Fields whose values `config` derived rather than was given (a config class may define
    `_derived_fields()`; see `ModelConfig`)."""
    method = getattr(config, "_derived_fields", None)
    return tuple(method()) if method is not None else ()


def _without_derived(config: Any, data: Any) -> Any:
    """`data` (= `to_dict(config)`) less every derived value, at any depth."""
    if dataclasses.is_dataclass(config) and isinstance(data, dict):
        for f in dataclasses.fields(config):
            if f.name in data:
                data[f.name] = _without_derived(getattr(config, f.name), data[f.name])
        for name in _derived_fields(config):
            data.pop(name, None)
    elif isinstance(config, dict) and isinstance(data, dict):
        for key, value in config.items():
            if str(key) in data:
                data[str(key)] = _without_derived(value, data[str(key)])
    elif isinstance(config, list | tuple) and isinstance(data, list):
        data = [_without_derived(c, d) for c, d in zip(config, data, strict=True)]
    return data


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        msg = e["msg"].removeprefix("Value error, ")
        rule = e.get("ctx", {}).get("error")
        if isinstance(rule, RuleError):
            loc, msg = [*loc, rule.key], rule.message
        key = ".".join(loc) or "(top level)"
        if e["type"] == "unexpected_keyword_argument":
            msg = "unknown key"
        elif e["type"] in ("missing", "missing_argument"):
            msg = "required key is missing"
        shown = e.get("input")
        quiet = isinstance(rule, RuleError) or e["type"] in ("missing", "missing_argument")
        got = "" if quiet or isinstance(shown, dict) else f" (got {shown!r})"
        lines.append(f"{source}: {key}: {msg}{got}")
    return "\n".join(lines)


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a float (YAML 1.1 insists on a dot: `1.0e-3`)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
