"""The README's configuration reference, generated from the config Structs.

Types, defaults and descriptions (``msgspec.Meta(description=...)``) all come from
:mod:`laerebogen.config.schema`, so the reference cannot drift from the code: a test compares it
with the README, and a key without a description is an error rather than a blank cell.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

from laerebogen.config.schema import Config

SIGNS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
HEADER = "| key | type | default | description |\n|---|---|---|---|"


def reference_markdown() -> str:
    """Every key of a configuration: one Markdown table per TOML table, in declaration order."""
    return render_tables(Config)


def render_tables(struct: type[msgspec.Struct], path: str = "") -> str:
    """The tables of ``struct`` at key path ``path`` ("" for the top level) and of every table
    inside it; raises ValueError for a field without a description."""
    return "\n\n".join(_sections(struct, path, None)) + "\n"


def _sections(struct: type[msgspec.Struct], path: str, defaults: Any) -> Iterator[str]:
    """The section of one table, then those of its tables. ``defaults`` is the table's default
    value, if it has one: a nested table's defaults are its field's, not its class's."""
    # A path ending in [] is a list's entries, an array of tables in TOML.
    heading = f"[[{path[:-2]}]]" if path.endswith("[]") else f"[{path}]"
    rows = [f"#### `{heading}`" if path else "#### Top level", "", HEADER]
    tables: dict[str, tuple[type[msgspec.Struct], Any]] = {}
    for field in msgspec.structs.fields(struct):
        key = f"{path}.{field.name}" if path else field.name
        kind, bounds, description = _unwrap(field.type, key)
        default = _default(field, defaults)
        if get_origin(kind) is dict and _is_table(get_args(kind)[1]):
            table = f"{key}.<name>"  # a table of named tables, each like the value type
            tables[table] = (get_args(kind)[1], None)
            see = f"see `[{table}]`"
            shown = f"required, {see}" if field.required else f"`{_toml(default)}`, {see}"
            rows.append(_row(field.name, "`table`", shown, description))
        elif (entry := _list_entry_table(kind)) is not None:
            table = f"{key}[]"
            tables[table] = (entry, None)
            shown = f"`{_toml(default)}`, see `[[{key}]]`"
            rows.append(_row(field.name, f"`{_type(kind, bounds)}`", shown, description))
        elif _is_table(kind):
            table = key
            tables[table] = (kind, default)
            see = f"see `[{table}]`"
            shown = f"required, {see}" if field.required else see
            rows.append(_row(field.name, "`table`", shown, description))
        else:
            shown = "required" if field.required else f"`{_toml(default)}`"
            rows.append(_row(field.name, f"`{_type(kind, bounds)}`", shown, description))
    yield "\n".join(rows)
    for table, (kind, default) in tables.items():
        yield from _sections(kind, table, default)


def _is_table(hint: Any) -> bool:
    """Whether ``hint`` is a config Struct (a TOML table)."""
    return isinstance(hint, type) and issubclass(hint, msgspec.Struct)


def _list_entry_table(hint: Any) -> type[msgspec.Struct] | None:
    """The config Struct a list may hold (``list[str | Table]``), or None."""
    if get_origin(hint) is not list:
        return None
    (entry,) = get_args(hint)
    options = get_args(entry) if get_origin(entry) in (Union, types.UnionType) else (entry,)
    return next((option for option in options if _is_table(option)), None)


def _unwrap(hint: Any, key: str) -> tuple[Any, dict[str, float], str]:
    """A field's type without ``Annotated``, its numeric bounds and its description."""
    bounds: dict[str, float] = {}
    description = ""
    if get_origin(hint) is Annotated:
        hint, *metas = get_args(hint)
        for meta in metas:
            if isinstance(meta, msgspec.Meta):
                limits = {bound: getattr(meta, bound) for bound in SIGNS}
                bounds |= {bound: value for bound, value in limits.items() if value is not None}
                description = meta.description or description
    if not description:
        raise ValueError(f"config key {key!r} has no description: annotate it with doc(...)")
    return hint, bounds, description


def _default(field: msgspec.structs.FieldInfo, defaults: Any) -> Any:
    """A field's default: from its table's default value if there is one, else its class."""
    if field.required:
        return None
    if defaults is not None:
        return getattr(defaults, field.name)
    if field.default is not msgspec.NODEFAULT:
        return field.default
    return field.default_factory()


def _row(key: str, kind: str, default: str, description: str) -> str:
    cells = (f"`{key}`", kind, default, description)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _type(hint: Any, bounds: dict[str, float]) -> str:
    """A readable type: ``int > 0``, ``float in [0, 1]``, ``"a" | "b"``, ``list[str]``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return " | ".join(json.dumps(value) for value in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type(arg, {}) for arg in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type(arg, {}) for arg in args)}]"
    if hint in (bool, str):
        return hint.__name__
    if _is_table(hint):
        return "table"
    if hint in (int, float):
        return _bounded(hint.__name__, bounds)
    raise TypeError(f"no reference rendering for {hint!r}")


def _bounded(name: str, bounds: dict[str, float]) -> str:
    """``name`` with its bounds: ``int > 0``, ``float in (0, 1]``."""
    low = bounds.get("gt", bounds.get("ge"))
    high = bounds.get("lt", bounds.get("le"))
    if low is not None and high is not None:
        opening = "(" if "gt" in bounds else "["
        closing = ")" if "lt" in bounds else "]"
        return f"{name} in {opening}{low:g}, {high:g}{closing}"
    return " ".join([name, *(f"{SIGNS[bound]} {value:g}" for bound, value in bounds.items())])


def _toml(value: Any) -> str:
    """``value`` as a TOML literal."""
    match value:
        case bool():
            return "true" if value else "false"
        case int() | float():
            return repr(value)
        case str():
            return json.dumps(value, ensure_ascii=False)
        case list():
            return "[" + ", ".join(_toml(item) for item in value) + "]"
        case dict():
            items = ", ".join(f"{json.dumps(key)} = {_toml(item)}" for key, item in value.items())
            return "{" + items + "}"
    raise TypeError(f"no TOML literal for {value!r}")
