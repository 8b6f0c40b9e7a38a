"""The honest status of a finished run: what it is, how it is shown, and whether it fails the command.

Every route that writes a result (``eval``'s run folders, OpenOOD's ``main.py`` route) classifies
the postprocessor's ``status()`` dict with :func:`run_status`, plus whether the net has random
weights. States, from the mildest:

* **ok**: the method ran as itself on trained weights.
* **random-weights** (``random_weights=True``: ``--pretrained none``): the net is randomly
  initialised; the numbers check the pipeline, not the method. Label ``RANDOM WEIGHTS: ...``.
* **stand-in** (key ``stand_in``: a string, the mark itself): the configuration asks the
  postprocessor to score as something else, e.g. ANTS with ``mllm: none``
  (``NO MLLM: NegLabel scores``) or with the scripted test backend.
* **partial** (key ``partial`` truthy, its value a string reason; or some of ``requests``
  failed, ``requests_failed`` / ``mllm_cost.failures``): part of the method's work failed.
* **degraded** (key ``degraded`` truthy, the reason ``degraded_reason`` or ``degraded`` itself
  when a string; ``fallback`` naming what was used instead; or every request failed): the
  method did not run as itself, e.g. ANTS whose MLLM could not load or answered nothing usable.

Every other key of ``status()`` is information only. A run can carry several marks; its
``state`` is the most severe and its ``label`` names each, e.g. ``DEGRADED: 8 of 8 requests
failed; RANDOM WEIGHTS: pretrained none``. A result is shown under :meth:`RunStatus.tag`
(``ants [NO MLLM: NegLabel scores]``), never under the bare name unless it is ``ok``.

Exit code (:attr:`RunStatus.fails`): a **partial** or **degraded** run, something that went wrong
while it ran, makes ``eval`` and ``openood-main`` exit 3 unless ``--allow-degraded``. A
**stand-in** or **random-weights** run is what the command line asked for: it is marked
everywhere but exits 0 (README's first command uses ``--pretrained none``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

OK, RANDOM_WEIGHTS, STAND_IN, PARTIAL, DEGRADED = "ok", "random-weights", "stand-in", "partial", "degraded"
SEVERITY = {OK: 0, RANDOM_WEIGHTS: 1, STAND_IN: 2, PARTIAL: 3, DEGRADED: 4}
FAILING = (PARTIAL, DEGRADED)
RANDOM_WEIGHTS_REASON = "pretrained none"
_HEAD = {RANDOM_WEIGHTS: "RANDOM WEIGHTS", PARTIAL: "PARTIAL", DEGRADED: "DEGRADED"}


@dataclass(frozen=True)
class RunStatus:
    """``state`` (the most severe mark) and ``marks``: ``(state, reason)`` pairs, worst first."""

    state: str = OK
    reasons: tuple[str, ...] = ()
    marks: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.state == OK

    @property
    def fails(self) -> bool:
        """A partial or degraded run: ``eval`` / ``openood-main`` exit 3 unless ``--allow-degraded``."""
        return self.state in FAILING

    @property
    def label(self) -> str:
        """``ok``, or every mark, e.g. ``DEGRADED: NegLabel scores, MLLM unavailable``,
        ``NO MLLM: NegLabel scores``, ``RANDOM WEIGHTS: pretrained none``."""
        if self.ok:
            return OK
        parts = []
        for state in sorted({s for s, _ in self.marks}, key=SEVERITY.__getitem__, reverse=True):
            reasons = [r for s, r in self.marks if s == state]
            parts += reasons if state == STAND_IN else [f"{_HEAD[state]}: {'; '.join(reasons)}"]
        return "; ".join(parts)

    @property
    def meaning(self) -> str:
        """What the numbers are, one phrase for the console."""
        if self.ok:
            return "the method's own numbers"
        if self.state == RANDOM_WEIGHTS:
            return "random weights: the numbers check the pipeline, not the method"
        return "not the method's own numbers"

    def tag(self, name: str) -> str:
        """The name a result is shown under: ``ants`` or ``ants [DEGRADED: ...]``, never plain."""
        return name if self.ok else f"{name} [{self.label}]"

    def as_dict(self) -> dict:
        return {"state": self.state, "label": self.label, "reasons": list(self.reasons),
                "marks": [list(m) for m in self.marks]}


def _count(value) -> Optional[int]:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def run_status(status: Mapping[str, Any], random_weights: bool = False) -> RunStatus:
    """Classify a postprocessor's ``status()`` dict (keys in the module docstring) and the net."""
    found: list[tuple[str, str]] = []
    if status.get("degraded"):
        reason = status.get("degraded_reason") or status["degraded"]
        found.append((DEGRADED, reason if isinstance(reason, str) else "the postprocessor reports "
                                                                        "it ran degraded"))
    if status.get("fallback"):
        fb = status["fallback"]
        found.append((DEGRADED, f"fallback to {fb}" if isinstance(fb, str) else "fallback used"))
    made, failed = _count(status.get("requests")), _count(status.get("requests_failed"))
    if failed is None and isinstance(status.get("mllm_cost"), Mapping):
        made, failed = _count(status["mllm_cost"].get("requests")), _count(status["mllm_cost"].get("failures"))
    said = " ".join(r for _, r in found)
    if failed and f"{failed} of" not in said:   # a degraded postprocessor may already say how many
        made = max(made or 0, failed)
        found.append((DEGRADED if failed >= made else PARTIAL, f"{failed} of {made} requests failed"))
    if status.get("partial"):
        part = status["partial"]
        found.append((PARTIAL, part if isinstance(part, str) else "the postprocessor reports a "
                                                                   "partial run"))
    if status.get("stand_in"):
        mark = status["stand_in"]
        found.append((STAND_IN, mark if isinstance(mark, str) else "STAND-IN: not the method"))
    if random_weights:
        found.append((RANDOM_WEIGHTS, RANDOM_WEIGHTS_REASON))
    if not found:
        return RunStatus()
    found.sort(key=lambda m: SEVERITY[m[0]], reverse=True)
    return RunStatus(found[0][0], tuple(r for _, r in found), tuple(found))
