"""Typed option groups from TOML: one validator for ``callqa.toml``, ``rules.toml`` and the rubric.

An option group is a frozen dataclass: its fields are the options, their annotations the types and
allowed values (``Literal``), their defaults the documented defaults, and an optional ``validate()``
method the constraints between fields. :func:`build_options` turns one TOML table (and, for the
configuration, ``CALLQA_*`` environment strings) into such a dataclass and appends every problem it
finds to a list as ``file:line: label: message``: an unknown option (a typo is never ignored), a
missing required option, a wrong type, a value outside its choices, a failed constraint. Callers
collect the problems of a whole file and raise one error listing them all, so a QA manager fixes them
in one go. Line-based files (phrase lists, the hallucination list) report the same way, by line.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

from .errors import ValidationError

T = TypeVar("T")

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def toml_line(lines: list[str], table: tuple[str, ...], key: str | None = None) -> int:
    """The line of a table's header in TOML text (``[rules."hold.notice"]``), or of one key in it.

    Args:
        lines: the file's lines.
        table: the table's path, e.g. ``("rules", "hold.notice")``; empty for top-level keys.
        key: a key inside the table (its line), or None (the header's line).

    Returns:
        A 1-based line number; 1 when the table or key is not found (the error still names the file).
    """
    start = 0
    if table:
        parts = r"\s*\.\s*".join(r'"?%s"?' % re.escape(part) for part in table)
        header = re.compile(r"^\s*\[\s*%s\s*\]" % parts)
        start = next((n for n, line in enumerate(lines, 1) if header.match(line)), 0)
        if not start:
            return 1
        if key is None:
            return start
    assignment = re.compile(r'^\s*"?%s"?\s*=' % re.escape(key or ""))
    for number, line in enumerate(lines[start:], start + 1):
        if table and line.lstrip().startswith("["):
            break
        if assignment.match(line):
            return number
    return start or 1


class Source:
    """Where a table of options comes from, for ``file:line`` in messages.

    ``name`` is what messages call the file (``rules.toml``); ``text`` its content (without it, as for
    defaults and the environment, messages carry the name only).
    """

    def __init__(self, name: str, text: str = ""):
        self.name = name
        self.text = text
        self.lines = text.splitlines()

    def where(self, table: tuple[str, ...], key: str | None = None) -> str:
        return f"{self.name}:{toml_line(self.lines, table, key)}" if self.lines else self.name


def read_toml(path: str | Path, error: type[ValidationError], what: str, name: str | None = None,
              ) -> tuple[dict[str, Any], Source]:
    """A TOML file's tables and its :class:`Source` (for line numbers).

    Args:
        path: the file.
        error: the error to raise (``ConfigError``, ``RubricError``...).
        what: what the file is, for messages ("config file", "rubric").
        name: how messages name the file (default: the path as given).

    Raises:
        error: the file is missing, unreadable or not valid TOML.
    """
    name = name or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
    try:
        return tomllib.loads(text), Source(name, text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{name}: not valid TOML: {exc}") from None


def describe(annotation: Any) -> str:
    """A type annotation as a user reads it: ``number``, ``one of any, all, none``, ``list of text``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is tuple:
        return f"list of {describe(args[0])}" if args else "list"
    if origin is dict:
        return "table"
    if is_dataclass(annotation):
        return "table"
    return {bool: "true or false", int: "whole number", float: "number", str: "text"}.get(annotation, str(annotation))


class _Invalid(Exception):
    """A value that does not fit its option; the message says what was expected."""


def _coerce(value: Any, annotation: Any, from_text: bool) -> Any:
    """``value`` as the type ``annotation`` declares, or raise _Invalid.

    TOML values must already have the right type (an integer is accepted for a number, a single text
    for a list of texts); environment values are text and are converted (``yes``/``no``, ``3``,
    ``a,b``).
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        for arm in arms:
            try:
                return _coerce(value, arm, from_text)
            except _Invalid:
                continue
        raise _Invalid(describe(annotation))
    if origin is Literal:
        if value in args:
            return value
        raise _Invalid(describe(annotation))
    if origin is tuple:
        element = args[0] if args else str
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()] if from_text else [value]
        elif isinstance(value, list):
            items = value
        else:
            raise _Invalid(describe(annotation))
        return tuple(_coerce(item, element, from_text) for item in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in _TRUE + _FALSE:
            return str(value).lower() in _TRUE
        raise _Invalid(describe(bool))
    if annotation in (int, float):
        if from_text and isinstance(value, str):
            try:
                value = float(value) if annotation is float or "." in value else int(value)
            except ValueError:
                raise _Invalid(describe(annotation)) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(describe(annotation))
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise _Invalid(describe(int))
            return int(value)
        return value  # a number as written (60 stays 60), so evidence quotes the rule as the user wrote it
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Invalid(describe(str))
    raise _Invalid(describe(annotation))  # pragma: no cover - an option type this module does not know


def build_options(cls: type[T], values: Mapping[str, Any], source: Source, table: tuple[str, ...],
                  label: str, problems: list[str], environment: Mapping[str, tuple[str, str]] | None = None,
                  ) -> T | None:
    """Build the option dataclass ``cls`` from one TOML table; append every problem to ``problems``.

    Args:
        cls: a dataclass whose fields are the options (annotations give types and choices; a field
            without a default is required; a nested dataclass is an inline table; a method
            ``validate(self)`` may return ``(option, message)`` pairs for constraints between options).
        values: the table as TOML parsed it.
        source: the file, for line numbers.
        table: the table's path in the file (``("asr",)``, ``("rules", "hold.notice")``).
        label: how messages name the table (``[asr]``, ``rule 'hold.notice'``).
        problems: where problems go, as ``file:line: label: message``.
        environment: option name -> (variable name, text) of environment overrides, which win.

    Returns:
        The options, or None when anything was wrong (the problems say what).
    """
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    before = len(problems)
    if not isinstance(values, Mapping):
        problems.append(f"{source.where(table)}: {label} must be a table")
        return None
    for key in values:
        if key not in known:
            problems.append(f"{source.where(table, key)}: {label}: unknown option {key!r}; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        annotation = hints[f.name]
        if environment and f.name in environment:
            variable, text = environment[f.name]
            try:
                kwargs[f.name] = _coerce(text, annotation, from_text=True)
            except _Invalid as exc:
                problems.append(f"environment {variable}: {text!r} is not a valid {exc}")
            continue
        if f.name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                problems.append(f"{source.where(table)}: {label} needs {f.name!r} ({describe(annotation)})")
            continue
        value = values[f.name]
        nested = _nested_dataclass(annotation)
        if nested is not None and isinstance(value, Mapping):
            kwargs[f.name] = build_options(nested, value, source, table, f"{label}: {f.name}", problems)
            continue
        try:
            kwargs[f.name] = _coerce(value, annotation, from_text=False)
        except _Invalid as exc:
            expected = str(exc)
            message = (f"{f.name} must be {expected}, not {value!r}" if expected.startswith("one of")
                       else f"{f.name} = {value!r} is not a valid {expected}")
            problems.append(f"{source.where(table, f.name)}: {label}: {message}")
    if len(problems) > before:
        return None
    options = cls(**kwargs)
    validate = getattr(options, "validate", None)
    for key, message in (validate() if validate else ()):
        problems.append(f"{source.where(table, key)}: {label}: {message}")
    return options if len(problems) == before else None


def _nested_dataclass(annotation: Any) -> type | None:
    """The dataclass an option holds (``Window | None`` -> ``Window``), or None."""
    candidates = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    return next((c for c in candidates if isinstance(c, type) and is_dataclass(c)), None)


def effective_options(options: Any) -> str:
    """Options as ``name=value`` pairs, defaults included: what a rule or group really runs with."""
    def show(value: Any) -> str:
        if is_dataclass(value):
            inner = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
            return "{" + ", ".join(f"{k}={v}" for k, v in inner.items()) + "}"
        if isinstance(value, tuple):
            return "[" + ", ".join(str(v) for v in value) + "]"
        return str(value)

    return ", ".join(f"{f.name}={show(getattr(options, f.name))}" for f in fields(options)
                     if getattr(options, f.name) is not None)
