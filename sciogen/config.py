"""Typed configuration: dataclasses that round-trip through YAML, with strict checking.

This is the package's ground floor: it imports no torch, so configs can be read by light
tools and by every layer above (the dataset registry, the trainer, the domains). A training
run is described by one YAML file whose top level is a domain's run config (a dataclass
deriving from :class:`sciogen.train.config.RunConfig`)::

    domain: toy
    data: {num_samples: 20000}
    train: {steps: 3000, lr: 2.0e-3}

:func:`from_dict` builds the dataclass and rejects unknown keys and values of the wrong
type with a :class:`ConfigError` that names the key (``train.lrr``) and, when there is
one, the closest known key. :func:`apply_overrides` applies shell overrides
``key.sub=value`` (values are read as YAML) before the check, so a mistyped override fails
the same way. :func:`to_dict` / :func:`save_config` write the resolved config back.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``,
``X | None``, ``tuple[...]``, ``list[X]``, ``dict[str, X]`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, TypeVar

import yaml

__all__ = [
    "ConfigError",
    "check_choice",
    "from_dict",
    "to_dict",
    "apply_overrides",
    "parse_override",
    "load_yaml",
    "save_config",
    "config_to_yaml",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key is unknown, missing or has a value of the wrong type."""


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming both."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


# -- dict <-> dataclass ----------------------------------------------------------------------


def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a plain mapping, checking every key and type.

    Missing keys take the field's default. Raises :class:`ConfigError` naming the full
    dotted key for an unknown key, a missing required key or a badly typed value.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping of keys to values, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(prefix, key, fields))
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(data[name], hints[name], prefix + name) for name in fields if name in data}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field without a value
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {err}") from None


def _unknown_key_message(prefix: str, key: Any, fields: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(str(key), list(fields), n=1)
    hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
    return f"unknown config key {prefix}{key}{hint} (known keys here: {', '.join(fields)})"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check / convert one value against a type annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, args, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=key + ".")
    if origin in (tuple, list):
        return _coerce_sequence(value, origin, args, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        vt = args[1] if args else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, tp, key)


def _coerce_union(value: Any, args: tuple, key: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _coerce(value, arg, key)
        except ConfigError as err:
            errors.append(str(err))
    names = " or ".join(_type_name(a) for a in args)
    raise ConfigError(f"{key} must be {names}; got {value!r}")


def _coerce_sequence(value: Any, origin: type, args: tuple, key: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key} must be a list, got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{key} must have {len(args)} entries, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{key}: unsupported field type {tp!r} in a config dataclass")
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a config dataclass (tuples become lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- YAML and overrides ---------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"train.lr=1e-3"`` into (["train", "lr"], 0.001); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} must look like key.sub=value (e.g. train.lr=1e-3)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({err})") from None
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of the raw config mapping with ``key.sub=value`` overrides applied.

    Intermediate sections are created when absent; the typed check in :func:`from_dict`
    then rejects any key that the config does not have.
    """
    out = _copy_mapping(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return out


def _copy_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy_mapping(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from a file, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of keys to values at the top level")
    return data


def config_to_yaml(config: Any) -> str:
    """The config as YAML text (keys in field order)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_yaml(config))
    return path
