"""One parameter field: its declaration (:func:`param`) and its value rules (:class:`_Spec`).

:mod:`openood_immuno.core.params` builds the method parameter dataclasses on these; see its
docstring for the rules (types, bounds, placeholders, patterns) every refusal names.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
import typing
from typing import Any, Optional, Sequence

_MISSING = object()


class ParamError(ValueError):
    """A parameter value or name that cannot be used; the message names the key and the fix."""


def param(default: Any, help: str, *, yml: Optional[str] = None, choices: Optional[Sequence[Any]] = None,
          low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
          high_open: bool = False, also: Sequence[str] = (), placeholder: Optional[str] = None,
          pattern: Optional[str] = None, nonempty: bool = False,
          sweep: Optional[Sequence[Any]] = None, means: Sequence[str] = ()) -> Any:
    """A dataclass field with its validation rules and documentation.

    Args:
        default: the default (lists as tuples: the dataclass is frozen).
        help: one line for the docs' parameter table.
        yml: the yml name when it differs from the field name (Python keywords).
        choices: the allowed values.
        low, high: bounds of a number (inclusive unless ``low_open``/``high_open``).
        also: words accepted instead of a number (``margin: auto``).
        placeholder: a text (or each text of a list) must contain it and format with it
            (``'{}'`` = the class name, ``'{class_name}'`` = a named one).
        pattern: a regular expression every text (of a list) must match in full.
        nonempty: a text or list must not be empty.
        sweep: the default OpenOOD APS list of this parameter (``<name>_list``).
        means: other words a user may write for it (``temperature`` for ``T``); an unknown key
            equal to one of them is answered with "did you mean" this parameter.
    """
    meta = {"help": help, "yml": yml, "choices": tuple(choices) if choices is not None else None,
            "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "also": tuple(also), "placeholder": placeholder, "pattern": pattern, "nonempty": nonempty,
            "sweep": tuple(sweep) if sweep is not None else None, "means": tuple(means)}
    return dataclasses.field(default=default, metadata=meta)


def _repr(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _Spec:
    """One field: its yml name, Python type and rules (from the annotation and ``param``)."""

    def __init__(self, f: dataclasses.Field, hint: Any):
        meta = f.metadata
        self.field, self.attr = f, f.name
        self.name = meta.get("yml") or f.name
        self.hint, self.meta = hint, meta
        self.default = f.default
        self.help = meta.get("help", "")
        self.sweep = meta.get("sweep")

    # ---- checking ---------------------------------------------------------------------------
    def coerce(self, value: Any) -> Any:
        """``value`` converted to the field's type, or ParamError('must be ..., got ...')."""
        hint, meta = self.hint, self.meta
        if meta.get("also") and isinstance(value, str):
            if value in meta["also"]:
                return value
            raise ParamError(f"must be a number or {' or '.join(map(repr, meta['also']))}, got {value!r}")
        if meta.get("also") and not _is_number(value):
            raise ParamError(f"must be a number or {' or '.join(map(repr, meta['also']))}, got {value!r}")
        original = value
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
        if base is bool:
            if not isinstance(value, bool):
                raise ParamError(f"must be true or false, got {value!r}")
            return value
        if base is int:
            value = self._int(value)
        elif base is float:
            value = self._float(value)
        elif base is str:
            if not isinstance(value, str):
                raise ParamError(f"must be a text, got {value!r}")
            self._text(value)
        elif typing.get_origin(base) is tuple:
            value = self._texts(value)
        else:  # pragma: no cover - a declaration error, caught by the tests of every class
            raise TypeError(f"parameter {self.name}: unsupported type {hint!r}")
        return self._bounded(value, original, "an integer" if base is int else "a number")

    def _int(self, value: Any) -> int:
        if isinstance(value, bool) or not _is_number(value):
            raise ParamError(f"must be an integer{self._range_text()}, got {value!r}")
        if not isinstance(value, numbers.Integral):
            if not math.isfinite(value) or not float(value).is_integer():
                raise ParamError(f"must be an integer{self._range_text()}, got {value!r}")
        return int(value)

    def _float(self, value: Any) -> float:
        if not _is_number(value):
            raise ParamError(f"must be a number{self._range_text()}, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ParamError(f"must be a finite number{self._range_text()}, got {value!r}")
        return value

    def _text(self, value: str) -> None:
        meta = self.meta
        if meta.get("nonempty") and not value.strip():
            raise ParamError("must not be empty")
        holder = meta.get("placeholder")
        if holder is not None:
            sample = {"class_name": "tench"} if holder == "{class_name}" else None
            try:
                ok = holder in value and (value.format(**sample) if sample else value.format("tench"))
            except (IndexError, KeyError, ValueError):
                ok = False
            if not ok:
                raise ParamError(f"must be a template with one {holder} (where the class name goes), "
                                 f"got {value!r}")
        if meta.get("pattern") and not re.fullmatch(meta["pattern"], value):
            raise ParamError(f"has an invalid entry {value!r} (expected the form {meta['pattern']})")

    def _texts(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            raise ParamError(f"must be a list of texts, got the single text {value!r}: write it as a "
                             f"list, e.g. [{value}]")
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ParamError(f"must be a list of texts, got {value!r}")
        if self.meta.get("nonempty") and not value:
            raise ParamError("must not be an empty list")
        for v in value:
            self._text(v)
        return tuple(value)

    def _range_text(self) -> str:
        low, high, meta = self.meta.get("low"), self.meta.get("high"), self.meta
        if low is not None and high is not None:
            return (f" in {'(' if meta['low_open'] else '['}{low}, {high}"
                    f"{')' if meta['high_open'] else ']'}")
        if low is not None:
            return f" {'>' if meta['low_open'] else '>='} {low}"
        if high is not None:
            return f" {'<' if meta['high_open'] else '<='} {high}"
        return ""

    def _bounded(self, value: Any, original: Any, kind: str) -> Any:
        meta = self.meta
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            raise ParamError(f"must be one of {choices!r}, got {original!r}")
        if _is_number(value):
            low, high = meta.get("low"), meta.get("high")
            if ((low is not None and (value < low or (meta["low_open"] and value == low)))
                    or (high is not None and (value > high or (meta["high_open"] and value == high)))):
                raise ParamError(f"must be {kind}{self._range_text()}, got {original!r}")
        return value

    # ---- docs ---------------------------------------------------------------------------------
    def type_text(self) -> str:
        hint = self.hint
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
        if self.meta.get("choices") is not None:
            text = " | ".join(str(c) for c in self.meta["choices"])
        elif typing.get_origin(base) is tuple:
            text = "list of text"
        else:
            text = {bool: "bool", int: "int", float: "float", str: "text"}[base]
            text += self._range_text().replace("inf", "∞")
        if self.meta.get("also"):
            text += " or " + " or ".join(self.meta["also"])
        return text
