"""Method parameters as frozen dataclasses: the single source of names, types, defaults, sweep
lists and help of every postprocessor parameter.

A method declares its parameters once (``openood_immuno/<method>/params.py``)::

    @dataclass(frozen=True)
    class MCMParams(Params):
        ALIASES = {"tau": "T"}                                   # OpenOOD's own mcm.yml key
        T: float = param(1.0, "softmax temperature on raw cosines", low=0, low_open=True,
                         sweep=(0.01, 0.1, 0.5, 1.0, 2.0))
        templates: Tuple[str, ...] = param(("a photo of a {}.",), "ID prompts", placeholder="{}")

Values are validated and typed once, when the instance is built (``__post_init__``; so
``dataclasses.replace`` validates too): an ``int`` field takes integers (an integral float such
as ``2.0`` becomes ``2``; ``2.5``, ``True`` and ``'abc'`` are refused), a ``float`` field takes
finite numbers (not NaN, not inf, not a bool), a ``Tuple[str, ...]`` field takes a list of
strings (a single string is refused: it would be read character by character), a template must
contain its placeholder, and ``low``/``high``/``choices`` bound the value. Every refusal is one
line that names the postprocessor, the key as the user wrote it (``immuno.epochs``), the
expected type or range and the value given.

A field's name is its yml name, except where that is a Python keyword (``lam``, yml ``lambda``:
``param(..., yml="lambda")``). ``ALIASES`` maps other spellings of a yml name to it (and
``<alias>_list`` to ``<name>_list`` in sweeps).

An unknown key is answered with the parameter it most likely means (:meth:`Params.suggest`):
a word of a field's ``means`` (its synonyms: ``mcm.temperature`` -> ``T``) or an alias, compared
without case and punctuation, before the closest spelling. A sweep key (``T_list``) given as a
single value (``--pp-arg mcm.T_list=...`` or under ``postprocessor_args``) is named as such, with
the two places it can go.

:func:`markdown_table` renders a class's parameter table; ``python -m
openood_immuno.experiments.param_docs --write-docs`` writes those tables into the docs.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from typing import Any, ClassVar, Iterable, Mapping, Optional, Sequence, Tuple

from .param_spec import ParamError, _Spec, param

__all__ = ["Params", "ParamError", "param", "markdown_table"]   # param, ParamError: declared in .param_spec


def _value_text(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"' if value == "" or value != value.strip() or "{" in value or " " in value else value
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


@dataclasses.dataclass(frozen=True)
class Params:
    """Base of every method's parameter dataclass (see the module docstring)."""

    ALIASES: ClassVar[Mapping[str, str]] = {}
    SWEEP_EXCLUDE: ClassVar[Tuple[str, ...]] = ()   # inherited fields whose sweep lists do not apply

    # ---- the fields ---------------------------------------------------------------------------
    @classmethod
    def specs(cls) -> dict[str, _Spec]:
        """``yml name -> spec`` in declaration order (base classes first)."""
        cached = cls.__dict__.get("_specs")
        if cached is None:
            hints = typing.get_type_hints(cls)
            cached = {s.name: s for s in (_Spec(f, hints[f.name]) for f in dataclasses.fields(cls))}
            type.__setattr__(cls, "_specs", cached)
        return cached

    @classmethod
    def names(cls) -> list[str]:
        return list(cls.specs())

    def __post_init__(self) -> None:
        for spec in self.specs().values():
            try:
                object.__setattr__(self, spec.attr, spec.coerce(getattr(self, spec.attr)))
            except ParamError as exc:
                raise ParamError(f"{spec.name} {exc}") from None
        self.check()

    def check(self) -> None:
        """Rules between fields (subclasses); raise ParamError('<name> ...')."""

    def resources(self) -> tuple[str, ...]:
        """External resources these values need at fit time (``'wordnet'``), so a run can check
        them before any model is built (subclasses)."""
        return ()

    # ---- building -----------------------------------------------------------------------------
    @classmethod
    def _canonical(cls, key: str) -> str:
        return cls.ALIASES.get(key, key)

    @classmethod
    def unknown(cls, keys: Iterable[str], sweep_keys: Iterable[str] = ()) -> list[str]:
        """The keys (and ``<name>_list`` sweep keys) that are not parameters, aliases included."""
        names = set(cls.specs())
        bad = [k for k in keys if cls._canonical(k) not in names]
        bad += [k for k in sweep_keys
                if not (k.endswith("_list") and cls._canonical(k[:-5]) in names)]
        return bad

    @classmethod
    def suggest(cls, key: str) -> Optional[str]:
        """The parameter an unknown ``key`` most likely means (``<name>_list`` for a sweep key), or
        None: a name, alias or synonym (``means``) equal to it without case and punctuation
        first, else the closest of those by spelling (difflib, cutoff 0.6); always the yml name."""
        is_list = key.endswith("_list")
        base = key[:-5] if is_list else key
        words: dict[str, str] = {}
        for name, spec in cls.specs().items():
            for word in (name, spec.attr, *spec.meta.get("means", ())):
                words.setdefault(word, name)
        for alias, name in cls.ALIASES.items():
            words.setdefault(alias, name)

        def plain(text: str) -> str:
            return re.sub(r"[^a-z0-9]", "", text.lower())

        hit = next((name for word, name in words.items() if plain(word) == plain(base)), None)
        if hit is None:
            close = difflib.get_close_matches(base, list(words), n=1, cutoff=0.6)
            hit = words[close[0]] if close else None
        if hit is None:
            return None
        return hit + "_list" if is_list else hit

    @classmethod
    def _unknown_message(cls, bad: Sequence[str], where: str) -> str:
        names = cls.names()
        hints = {k: cls.suggest(k) for k in bad}
        guess = "; ".join(f"did you mean {h!r} for {k!r}?" for k, h in hints.items() if h and h != k)
        return (f"{where}: unknown parameter(s) {sorted(bad)}; valid ones are {sorted(names)} "
                f"(sweeps as '<name>_list')" + (f"; {guess}" if guess else ""))

    @classmethod
    def _is_sweep_key(cls, key: str) -> bool:
        return key.endswith("_list") and cls._canonical(key[:-5]) in cls.specs()

    @classmethod
    def _check_keys(cls, keys: Iterable[str], sweep_keys: Iterable[str], where: str, prefix: str) -> None:
        """ParamError for a sweep key given as a value (``T_list`` among the args), then for
        unknown keys (with "did you mean")."""
        keys = list(keys)
        misplaced = [k for k in keys if cls._is_sweep_key(k)]
        if misplaced:
            key = misplaced[0]
            name = cls._canonical(key[:-5])
            raise ParamError(f"{where}: {prefix}{key} is a sweep list (the values OpenOOD's parameter "
                             f"search tries), not a parameter: set one value with {prefix}{name}=VALUE "
                             f"(--pp-arg, or {name}: VALUE under postprocessor_args), or put {key}: "
                             "[...] under postprocessor_sweep in a yml config (searched with --aps)")
        bad = cls.unknown(keys, sweep_keys)
        if bad:
            raise ParamError(cls._unknown_message(bad, where))

    @classmethod
    def canonical(cls, values: Mapping[str, Any], where: str = "", suffix: str = "") -> dict[str, Any]:
        """``values`` with aliases replaced by the names they stand for (``tau`` -> ``T``; with
        ``suffix='_list'``, ``tau_list`` -> ``T_list``, and keys without the suffix are kept
        as they are, for :meth:`unknown` to report). The one place aliases are resolved: a
        name given twice (``tau`` and ``T``) raises ParamError naming ``where``."""
        where = where or cls.__name__
        out: dict[str, Any] = {}
        given: dict[str, str] = {}
        for key, value in values.items():
            if suffix and not key.endswith(suffix):
                name = key
            else:
                name = cls._canonical(key[:-len(suffix)] if suffix else key) + suffix
            if name in out:
                alias = key if key != name else given[name]
                raise ParamError(f"{where}: both {alias!r} and {name!r} are given ({alias!r} is an "
                                 f"alias of {name!r}): keep one")
            out[name], given[name] = value, key
        return out

    @classmethod
    def from_mapping(cls, values: Optional[Mapping[str, Any]] = None, where: str = "",
                     prefix: str = "") -> "Params":
        """An instance from ``{yml name: value}`` (missing names take their defaults).

        ``where`` names the source in messages (``"postprocessor 'immuno'"``), ``prefix`` is put
        before each key (``"immuno."``, as in ``--pp-arg immuno.epochs=3``).
        """
        where = where or cls.__name__
        values = dict(values or {})
        cls._check_keys(values, (), where, prefix)
        values = cls.canonical(values, where)
        specs = cls.specs()
        try:
            return cls(**{specs[k].attr: v for k, v in values.items()})
        except ParamError as exc:
            raise ParamError(f"{where}: {prefix}{exc}") from None

    def replace(self, values: Mapping[str, Any], where: str = "", prefix: str = "") -> "Params":
        """A copy with ``{yml name: value}`` changed (validated as at load)."""
        where = where or type(self).__name__
        self._check_keys(values, (), where, prefix)
        specs = self.specs()
        try:
            return dataclasses.replace(self, **{specs[k].attr: v
                                                for k, v in self.canonical(values, where).items()})
        except ParamError as exc:
            raise ParamError(f"{where}: {prefix}{exc}") from None

    @classmethod
    def sweep_defaults(cls) -> dict[str, list]:
        """``{yml name: default APS list}`` of the swept parameters, in declaration order."""
        return {name: list(s.sweep) for name, s in cls.specs().items()
                if s.sweep is not None and name not in cls.SWEEP_EXCLUDE}

    @classmethod
    def sweep_from_mapping(cls, sweep: Optional[Mapping[str, Any]] = None, where: str = "",
                           prefix: str = "") -> dict[str, list]:
        """``{yml name: list}`` of the APS grid (the sweep rule):

        * ``sweep`` names at least one list (``<name>_list: [...]``): the grid is exactly the
          named lists; every other parameter stays at its value in ``postprocessor_args``
          (a three-key sweep of two values each is 8 combinations, never 8 times the default
          grid of the others), in the order named (OpenOOD's ``args_dict`` order);
        * ``sweep`` is empty or names only ``null`` entries: the dataclass's default lists
          (:meth:`sweep_defaults`, declaration order), less the parameters set to ``null``.

        Every value is validated like the parameter itself."""
        where = where or cls.__name__
        sweep = dict(sweep or {})
        bad = cls.unknown((), sweep)
        if bad:
            raise ParamError(cls._unknown_message(bad, where))
        renamed = cls.canonical(sweep, where, "_list")
        named = any(values is not None for values in renamed.values())
        out = {} if named else cls.sweep_defaults()
        specs = cls.specs()
        for key, values in renamed.items():
            name = key[:-5]
            if values is None:
                out.pop(name, None)
                continue
            if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
                raise ParamError(f"{where}: {prefix}{key} must be a non-empty list of values, got "
                                 f"{values!r}")
            checked = []
            for v in values:
                try:
                    checked.append(specs[name].coerce(v))
                except ParamError as exc:
                    raise ParamError(f"{where}: {prefix}{key} entry {exc}") from None
            out[name] = checked
        return out

    @classmethod
    def from_config(cls, args: Optional[Mapping[str, Any]], sweep: Optional[Mapping[str, Any]],
                    where: str = "", prefix: str = "") -> tuple["Params", dict[str, list]]:
        """``(params, sweep)`` from OpenOOD's ``postprocessor_args`` and ``postprocessor_sweep``;
        unknown names of both are reported in one message."""
        where = where or cls.__name__
        cls._check_keys(args or {}, sweep or {}, where, prefix)
        return cls.from_mapping(args, where, prefix), cls.sweep_from_mapping(sweep, where, prefix)

    # ---- reading ------------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """The value of yml name ``name``."""
        return getattr(self, self.specs()[self._canonical(name)].attr)

    def as_args(self) -> dict[str, Any]:
        """``{yml name: value}`` of every parameter (lists as lists): the resolved yml args."""
        return {name: list(v) if isinstance(v, tuple) else v
                for name, v in ((n, getattr(self, s.attr)) for n, s in self.specs().items())}

    def changed(self, other: "Params", names: Iterable[str]) -> bool:
        """Whether any of the yml ``names`` differs between ``self`` and ``other``."""
        return any(self.get(n) != other.get(n) for n in names)


# ---- docs -------------------------------------------------------------------------------------
def markdown_table(cls: type[Params], own: bool = False) -> str:
    """The parameter table of ``cls`` (``own``: only the fields ``cls`` adds to its bases)."""
    inherited = set()
    if own:
        for base in cls.__mro__[1:]:
            if base is not Params and dataclasses.is_dataclass(base) and hasattr(base, "specs"):
                inherited |= set(base.specs())
    rows = ["| parameter | type | default | sweep | meaning |", "|---|---|---|---|---|"]
    for name, spec in cls.specs().items():
        if name in inherited:
            continue
        swept = spec.sweep is not None and name not in cls.SWEEP_EXCLUDE
        sweep = ", ".join(_value_text(v) for v in spec.sweep) if swept else "-"
        rows.append(f"| `{name}` | {_cell(spec.type_text())} | {_cell(_value_text(spec.default))} | "
                    f"{_cell(sweep)} | {_cell(spec.help)} |")
    if cls.ALIASES and not own:
        rows.append("")
        rows.append("Aliases: " + ", ".join(f"`{a}` = `{n}`" for a, n in cls.ALIASES.items()) + ".")
    return "\n".join(rows)
