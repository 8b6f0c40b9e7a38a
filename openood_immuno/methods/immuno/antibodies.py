"""The antibody bank: ID class name -> antibodies, stored as one versioned JSON file.

An antibody is a text naming something that is *not* the class but lives next to it in
CLIP's space (Immuno-VLM, Phase 2): a ``near_ood`` look-alike ("carp" for "tench") or a
``contextual`` anomaly ("a tench made of clouds"). File layout (``format_version`` 1)::

    {"format": "openood-immuno/antibody-bank", "format_version": 1,
     "class_names": ["tench", "goldfish", ...],          # the ID classes, label order
     "provenance": {"generator": "wordnet", "model": "WordNet 3.0", "prompts": {...},
                    "seed": 0, "params": {...}, "generator_version": 1,
                    "created": "...Z", "updated": "...Z"},
     "classes": {"tench": [{"text": "carp", "kind": "near_ood",
                            "source": "wordnet:tench.n.01->carp.n.02:hop1"}, ...], ...},
     "short": {"<class>": {"near_ood": 3, "contextual": 5,
                           "wanted": {"near_ood": 10, "contextual": 5},
                           "problems": ["..."]}}}

``classes`` is keyed by class name; a name listed twice in ``class_names`` (ImageNet has two
"missile" and two "sunglasses" classes in CLIP's cleaned list) has one merged entry. A
bank is complete when every name of ``class_names`` has an entry (possibly an empty list,
recorded in ``short``); a bank being generated is saved incomplete and resumed.

Every text is de-duplicated within its class (case, spacing and surrounding punctuation
ignored), and a text equal to any ID class name is dropped: it would reject ID images. Both
happen when a class is generated (:meth:`AntibodyBank.add_class`); a loaded file is cleaned of ID
class names again (one info line counts them), since it may have been written by hand or by
another tool. A bank used for scoring must give antibodies to at least half of the ID classes
(:meth:`AntibodyBank.require_coverage`) unless the caller allows a partial bank.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from openood_immuno.core.cache import atomic_write_json, content_key
from openood_immuno.core.textfiles import read_utf8_file

log = logging.getLogger(__name__)

BANK_FORMAT = "openood-immuno/antibody-bank"
BANK_VERSION = 1
KINDS = ("near_ood", "contextual")
_VOLATILE_PROVENANCE = ("created", "updated")
MIN_COVERAGE = 0.5
"""Fewest ID classes (fraction) a bank must give antibodies to (unless a partial bank is allowed)."""
_HINT = ("build one with `openood-immuno antibodies --id imagenet --generator wordnet --out FILE` "
         "(see docs/immuno_vlm.md)")


class BankError(ValueError):
    """A bank file that is missing, malformed, empty or built for other classes."""


@dataclass(frozen=True)
class Antibody:
    """One antibody: ``text``, its ``kind`` (``near_ood`` | ``contextual``) and ``source``."""

    text: str
    kind: str
    source: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise BankError(f"antibody kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise BankError(f"antibody text must be a non-empty string, got {self.text!r}")

    def to_dict(self) -> dict:
        return {"text": self.text, "kind": self.kind, "source": self.source}


def normalise_text(text: str) -> str:
    """Comparison form of a text: case-folded, single spaces, no surrounding punctuation."""
    text = re.sub(r"\s+", " ", text.replace("_", " ")).strip()
    return text.strip(" .,;:!?\"'`*").casefold()


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AntibodyBank:
    """Antibodies of a set of ID classes, with provenance and shortfall records."""

    def __init__(self, class_names: Sequence[str], provenance: Mapping,
                 classes: Optional[Mapping[str, Sequence[Antibody]]] = None,
                 short: Optional[Mapping[str, Mapping]] = None):
        if not class_names:
            raise BankError("an antibody bank needs at least one class name")
        self.class_names = list(class_names)
        self.provenance = dict(provenance)
        self.classes: dict[str, list[Antibody]] = {k: list(v) for k, v in (classes or {}).items()}
        self.short: dict[str, dict] = {k: dict(v) for k, v in (short or {}).items()}
        self._id_names = {normalise_text(n) for n in self.class_names}

    # ---- content ------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self.classes

    def __len__(self) -> int:
        return sum(len(v) for v in self.classes.values())

    def add_class(self, name: str, antibodies: Iterable[Antibody], wanted: Mapping[str, int],
                  problems: Sequence[str] = ()) -> list[Antibody]:
        """Store ``name``'s antibodies (de-duplicated, ID names dropped); returns what was kept.

        A class with fewer antibodies of a kind than ``wanted`` is recorded in ``short``
        with ``problems`` (the generator's log lines for it).
        """
        if name not in self.class_names:
            raise BankError(f"class {name!r} is not one of this bank's class names")
        kept, seen = [], set()
        for ab in antibodies:
            key = (ab.kind, normalise_text(ab.text))
            if not key[1] or key in seen or key[1] in self._id_names:
                continue
            seen.add(key)
            kept.append(ab)
        self.classes[name] = kept
        counts = {k: sum(ab.kind == k for ab in kept) for k in KINDS}
        if any(counts[k] < wanted.get(k, 0) for k in KINDS):
            self.short[name] = {**counts, "wanted": {k: int(wanted.get(k, 0)) for k in KINDS},
                                "problems": list(problems)}
        else:
            self.short.pop(name, None)
        return kept

    def antibodies_for(self, name: str) -> list[Antibody]:
        if name not in self.classes:
            raise BankError(f"class {name!r} has no entry in the antibody bank")
        return self.classes[name]

    def missing(self, class_names: Optional[Sequence[str]] = None) -> list[str]:
        """Names of ``class_names`` (default: the bank's own) without an entry, first-seen order."""
        names = self.class_names if class_names is None else class_names
        return list(dict.fromkeys(n for n in names if n not in self.classes))

    def require_complete(self, class_names: Sequence[str], where: str = "antibody bank",
                         allow_partial: bool = False) -> None:
        """Raise :class:`BankError` unless every name of ``class_names`` has an entry, some
        class has at least one antibody, and :meth:`require_coverage` passes."""
        missing = self.missing(class_names)
        if missing:
            own_missing = self.missing()
            if own_missing and not set(missing) - set(own_missing):
                raise BankError(f"{where} is incomplete: {len(own_missing)} of its "
                                f"{len(set(self.class_names))} classes have no entry yet (e.g. "
                                f"{own_missing[:3]}); resume it by re-running the same "
                                "`openood-immuno antibodies` command")
            raise BankError(f"{where} was built for another class set: {len(missing)} of the "
                            f"{len(set(class_names))} ID classes are missing from it (e.g. "
                            f"{missing[:3]}); {_HINT} for these classes")
        if not any(self.classes[n] for n in set(class_names)):
            raise BankError(f"{where} holds no antibody for any of the ID classes: every "
                            f"generation failed (see its 'short' records); {_HINT}")
        self.require_coverage(class_names, where, allow_partial)

    def require_coverage(self, class_names: Sequence[str], where: str = "antibody bank",
                         allow_partial: bool = False) -> float:
        """The fraction of the (distinct) ``class_names`` with at least one antibody; below
        :data:`MIN_COVERAGE` a :class:`BankError` (one line: file, coverage, fix), or with
        ``allow_partial`` a warning."""
        names = list(dict.fromkeys(class_names))
        covered = sum(bool(self.classes.get(n)) for n in names)
        fraction = covered / len(names) if names else 0.0
        if fraction >= MIN_COVERAGE:
            return fraction
        what = (f"{where} gives antibodies to {covered} of the {len(names)} ID classes "
                f"({100 * fraction:.1f}%, fewer than {100 * MIN_COVERAGE:.0f}%)")
        if not allow_partial:
            raise BankError(f"{what}: complete it with `openood-immuno antibodies` for these classes, "
                            "or set allow_partial_bank: true to use it anyway")
        log.warning("%s: used anyway (allow_partial_bank: true)", what)
        return fraction

    def drop_id_names(self) -> int:
        """Remove every antibody equal to an ID class name (normalised); returns how many."""
        dropped = 0
        for name, abs_ in self.classes.items():
            kept = [a for a in abs_ if normalise_text(a.text) not in self._id_names]
            dropped += len(abs_) - len(kept)
            self.classes[name] = kept
        return dropped

    def counts(self) -> dict[str, dict[str, int]]:
        """``class -> {kind: count}`` over the stored classes."""
        return {n: {k: sum(ab.kind == k for ab in abs_) for k in KINDS}
                for n, abs_ in self.classes.items()}

    def digest(self) -> str:
        """Content key of the antibodies (not of the provenance dates)."""
        return content_key("bank-v1", sorted((n, [a.to_dict() for a in v]) for n, v in self.classes.items()))

    def sha256(self) -> str:
        """SHA-256 (hex) of the bank's content: its class names and every antibody (text, kind,
        source), in canonical JSON; not of provenance dates, so a resumed build of the same
        antibodies keeps it. Results name their bank by it."""
        content = {"class_names": list(self.class_names),
                   "classes": {n: [a.to_dict() for a in v] for n, v in sorted(self.classes.items())}}
        return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False,
                                         separators=(",", ":")).encode("utf-8")).hexdigest()

    # ---- files --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"format": BANK_FORMAT, "format_version": BANK_VERSION,
                "class_names": self.class_names, "provenance": self.provenance,
                "classes": {n: [a.to_dict() for a in v] for n, v in self.classes.items()},
                "short": self.short}

    def save(self, path: str | Path) -> Path:
        """Write the bank atomically (an interrupted write never leaves a broken file)."""
        self.provenance["updated"] = utc_now()
        return atomic_write_json(self.to_json(), path)

    @classmethod
    def from_json(cls, data, where: str = "antibody bank") -> "AntibodyBank":
        """Validate a decoded bank; every error names the offending field."""
        if not isinstance(data, Mapping) or data.get("format") != BANK_FORMAT:
            raise BankError(f"{where} is not an openood-immuno antibody bank (no "
                            f"'format': {BANK_FORMAT!r}); {_HINT}")
        if data.get("format_version") != BANK_VERSION:
            raise BankError(f"{where} has format_version {data.get('format_version')!r}; this "
                            f"version of openood-immuno reads {BANK_VERSION}: regenerate it")
        names = data.get("class_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise BankError(f"{where}: 'class_names' must be a non-empty list of class names")
        provenance = data.get("provenance")
        if not isinstance(provenance, Mapping) or "generator" not in provenance:
            raise BankError(f"{where}: 'provenance' must be an object naming the 'generator'")
        raw = data.get("classes")
        if not isinstance(raw, Mapping):
            raise BankError(f"{where}: 'classes' must map class names to lists of antibodies")
        classes = {}
        for name, items in raw.items():
            if name not in names:
                raise BankError(f"{where}: class {name!r} in 'classes' is not in 'class_names'")
            if not isinstance(items, list):
                raise BankError(f"{where}: antibodies of class {name!r} must be a list")
            parsed = []
            for i, item in enumerate(items):
                if not isinstance(item, Mapping) or not {"text", "kind", "source"} <= set(item):
                    raise BankError(f"{where}: antibody {i} of class {name!r} must be an object "
                                    f"with 'text', 'kind' and 'source', got {item!r}")
                try:
                    parsed.append(Antibody(item["text"], item["kind"], str(item["source"])))
                except BankError as exc:
                    raise BankError(f"{where}: antibody {i} of class {name!r}: {exc}") from None
            classes[name] = parsed
        short = data.get("short") or {}
        if not isinstance(short, Mapping):
            raise BankError(f"{where}: 'short' must map class names to shortfall records")
        bank = cls(names, provenance, classes, short)
        dropped = bank.drop_id_names()
        if dropped:
            log.info("%s: %d antibodies equal to an ID class name dropped (they would reject ID "
                     "images)", where, dropped)
        return bank

    @classmethod
    def load(cls, path: str | Path) -> "AntibodyBank":
        """Read and validate a bank file (completeness is checked by :meth:`require_complete`)."""
        path = Path(path)
        try:
            text = read_utf8_file(path, "antibody bank", _HINT)
        except (OSError, ValueError) as exc:
            raise BankError(str(exc)) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BankError(f"antibody bank {str(path)!r} is not valid JSON ({exc}); {_HINT}") from None
        return cls.from_json(data, f"antibody bank {str(path)!r}")

    @classmethod
    def open_for_generation(cls, path: str | Path, class_names: Sequence[str],
                            provenance: Mapping) -> "AntibodyBank":
        """The bank at ``path`` to resume, or a new one when the file does not exist.

        Resuming requires the same class names and the same generator settings
        (provenance without its dates), so one file never mixes two generators.
        """
        path = Path(path)
        if not path.exists():
            now = utc_now()
            return cls(class_names, {**provenance, "created": now, "updated": now})
        bank = cls.load(path)
        if bank.class_names != list(class_names):
            raise BankError(f"{str(path)!r} holds a bank for another class set "
                            f"({len(bank.class_names)} classes): pass a new --out file")
        old = {k: v for k, v in bank.provenance.items() if k not in _VOLATILE_PROVENANCE}
        new = {k: v for k, v in provenance.items() if k not in _VOLATILE_PROVENANCE}
        if json.loads(json.dumps(old)) != json.loads(json.dumps(new)):
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise BankError(f"{str(path)!r} was built with other generator settings (differing: "
                            f"{changed}): resume it with the same settings or pass a new --out file")
        return bank
