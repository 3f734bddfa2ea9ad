"""Checks a command line against the commands' signatures before anything runs.

python-fire calls a command first and reports the words it could not use only after the call
returns, so a mistyped ``--executer`` would run a whole recipe with the default executor and
then fail. Checking every word against the command's signature first makes an unknown
command, an unknown flag or a surplus argument a one-line error that names the closest valid
name, and nothing runs.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Sequence
from typing import Any

from laerebogen.errors import UsageError

HELP_FLAGS = frozenset({"-h", "--help"})
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def check_command_line(root: object, words: Sequence[str]) -> None:
    """Raise :class:`UsageError` unless ``words`` name a command of ``root`` and only its
    parameters; a request for help is left to fire."""
    target: Any = root
    path: list[str] = []
    for index, word in enumerate(words):
        if inspect.ismethod(target):
            if not HELP_FLAGS & set(words):
                _check_arguments(" ".join(path), target, words[index:])
            return
        if word in HELP_FLAGS:
            return
        commands = _commands(target)
        name = word.replace("-", "_")  # fire takes check-code for check_code
        if name not in commands:
            where = " ".join([*path, ""])
            suggestion = _closest(word, [c.replace("_", "-") for c in commands], prefix=where)
            raise UsageError(f"unknown command '{where}{word}'{suggestion}")
        target = getattr(target, name)
        path.append(word)
    if inspect.ismethod(target):
        _check_arguments(" ".join(path), target, [])


def _commands(group: object) -> list[str]:
    """The public commands and command groups of ``group``."""
    return [name for name in dir(group) if not name.startswith("_")]


def _closest(word: str, names: Sequence[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f": did you mean {prefix}{match[0]}?" if match else ""


def _is_flag(word: str) -> bool:
    """What fire takes for a flag: ``--anything``, or a dash and a letter."""
    return word.startswith("--") or re.match(r"-[a-zA-Z]", word) is not None


def _check_arguments(command: str, function: Any, args: Sequence[str]) -> None:
    """Match ``args`` to ``function``'s parameters as fire does, refusing what fire would
    leave over. A flag is ``--name=value``, ``--name value``, ``--name`` (true, when no value
    follows), ``--noname`` (false) or ``-n`` for the one parameter starting with n; the
    other words fill the parameters not given as flags, in order."""
    parameters = [p for p in inspect.signature(function).parameters.values() if p.kind in _NAMED]
    names = [parameter.name for parameter in parameters]
    by_name = {parameter.name: parameter for parameter in parameters}
    given: set[str] = set()
    free: list[str] = []
    position = 0
    while position < len(args):
        word = args[position]
        position += 1
        if word == "--":
            raise UsageError(f"{command}: fire's own flags after '--' are not supported")
        if not _is_flag(word):
            free.append(word)
            continue
        key, equals, _ = word.lstrip("-").partition("=")
        key = key.replace("-", "_")
        alone = not equals and (position == len(args) or _is_flag(args[position]))
        name = _flag_name(key, names, alone)
        if name is None:
            flags = [n.replace("_", "-") for n in names]
            if len(key) == 1:
                initial = " or ".join(f"--{flag}" for flag in flags if flag.startswith(key))
                suggestion = f": use {initial}" if initial else ""
            else:
                suggestion = _closest(key.replace("_", "-"), flags, prefix="--")
            raise UsageError(f"{command}: unknown flag {word.partition('=')[0]}{suggestion}")
        given.add(name)
        if alone and not _may_stand_alone(by_name[name]):
            raise UsageError(f"{command}: --{name.replace('_', '-')} needs a value")
        if equals:
            _check_value(command, by_name[name], word.partition("=")[2])
        elif not alone:
            _check_value(command, by_name[name], args[position])
            position += 1  # the next word is the flag's value
    open_slots = [name for name in names if name not in given]
    if len(free) > len(open_slots):
        raise UsageError(f"{command}: unexpected argument {free[len(open_slots)]!r}")
    for name, value in zip(open_slots, free, strict=False):
        _check_value(command, by_name[name], value)
    filled = set(open_slots[: len(free)])
    missing = [
        p.name.replace("_", "-").upper()
        for p in parameters
        if p.name not in given | filled and p.default is inspect.Parameter.empty
    ]
    if missing:
        raise UsageError(f"{command}: missing {', '.join(missing)}")


def _may_stand_alone(parameter: inspect.Parameter) -> bool:
    """Whether a flag of ``parameter`` may come without a value (fire then passes True)."""
    return isinstance(parameter.default, bool) or "bool" in str(parameter.annotation)


def _flag_name(key: str, names: Sequence[str], alone: bool) -> str | None:
    """The parameter a flag names: its own name, ``no`` + a name (alone: false), or the one
    parameter starting with a single letter."""
    if key in names:
        return key
    if alone and key.startswith("no") and key[2:] in names:
        return key[2:]
    if len(key) == 1:
        initial = [name for name in names if name.startswith(key)]
        return initial[0] if len(initial) == 1 else None
    return None


def _check_value(command: str, parameter: inspect.Parameter, value: str) -> None:
    """Refuse a word that is no number for a parameter that takes only numbers."""
    annotation = str(parameter.annotation)
    numeric = ("int" in annotation or "float" in annotation) and "str" not in annotation
    if not numeric or (value in ("True", "False") and "bool" in annotation):
        return
    try:
        float(value)
    except ValueError:
        flag = parameter.name.replace("_", "-")
        raise UsageError(f"{command}: --{flag} takes a number, got {value!r}") from None
