"""Loading a configuration: a packaged name (``gemma-27b``, ``local``, ``tiny``) or a path to a
TOML file, plus ``key.path=value`` overrides.

Unknown keys and wrong types are errors naming the key path and the source, because a typo in a
sampling setting would otherwise silently run a multi-GPU-day job with defaults.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from laerebogen.config.schema import Config, Model
from laerebogen.errors import ConfigError

PACKAGED_DIR = Path(__file__).parent / "presets"


def packaged_names() -> list[str]:
    """Names of the configurations that ship with the package."""
    return sorted(path.stem for path in PACKAGED_DIR.glob("*.toml"))


def resolve_source(name_or_path: str) -> Path:
    """The TOML file behind a packaged name or a path."""
    candidate = Path(name_or_path).expanduser()
    looks_like_path = candidate.suffix == ".toml" or "/" in name_or_path
    if looks_like_path or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: no such config file")
        return candidate
    packaged = PACKAGED_DIR / f"{name_or_path}.toml"
    if packaged.is_file():
        return packaged
    names = ", ".join(packaged_names())
    raise ConfigError(f"unknown config {name_or_path!r}: use one of {names} or a path to a .toml")


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load, validate and override a configuration; every problem is one ConfigError line."""
    path = resolve_source(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    config = _validate(data, str(path))
    if not overrides:
        return config
    for override in overrides:
        _apply_override(data, override)
    return _validate(data, "--set " + " ".join(overrides))


def parse_config(text: str, source: str) -> Config:
    """Validate TOML text (e.g. a run's saved config); ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML: {error}") from None
    return _validate(data, source)


def dump_config(config: Config) -> str:
    """The configuration as TOML text that :func:`parse_config` reads back."""
    return msgspec.toml.encode(config).decode("utf-8")


def _validate(data: dict[str, Any], source: str) -> Config:
    # Each model first: msgspec names a key of a dict `[...]`, and the user needs its name.
    models = data.get("models")
    for name, table in models.items() if isinstance(models, dict) else ():
        try:
            msgspec.convert(table, Model)
        except msgspec.ValidationError as error:
            raise ConfigError(f"{source}: {_describe(error, f'models.{name}')}") from None
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None


_ERROR_AT = re.compile(r"(?P<what>.*) - at `\$(?P<where>.*)`")
_KEY_IN_MESSAGE = re.compile(r"Object (?:contains unknown|missing required) field `(?P<key>[^`]+)`")


def _describe(error: msgspec.ValidationError, table: str = "") -> str:
    """Turn msgspec's message into one line with a dotted key path (under ``table``, the
    path of what was validated)."""
    message = str(error)
    match = _ERROR_AT.fullmatch(message)
    what, where = (match["what"], match["where"]) if match else (message, "")
    key_path = f"{table}{where}".lstrip(".")
    key = _KEY_IN_MESSAGE.match(what)
    if key:
        full = f"{key_path}.{key['key']}" if key_path else key["key"]
        kind = "unknown key" if "unknown" in what else "missing required key"
        return f"{kind} '{full}'"
    what = what.replace("`", "")
    return f"'{key_path}': {what}" if key_path else what


def _apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``key.path=value`` in the raw TOML data; the value is parsed as TOML if it can be."""
    key_path, separator, raw_value = override.partition("=")
    keys = key_path.strip().split(".")
    if not separator or not all(keys):
        raise ConfigError(f"--set {override!r}: expected key.path=value")
    try:
        value = tomllib.loads(f"value = {raw_value}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    table = data
    for depth, key in enumerate(keys[:-1]):
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            where = ".".join(keys[: depth + 1])
            raise ConfigError(f"--set {override!r}: '{where}' is a value, not a table")
    table[keys[-1]] = value
