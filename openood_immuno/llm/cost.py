"""What a backend has cost, counted honestly, and when an endpoint is given up.

:class:`CostLog` counts every call (``calls``: one batch of a vision backend, one prompt of a
chat backend), every request sent (``requests``) and failed (``failures``: no answer, or an answer with no
usable text, which is also counted in ``unusable``: ``null``, empty, whitespace, or nothing the
caller can parse), the requests not
sent because the failure budget ran out (``skipped``), the images that got a description
(``images``), seconds and generated tokens. :meth:`CostLog.failure_note` is the one line a
status shows when anything failed.

:class:`FailureBudget`: an endpoint (or model) is given up after ``max_consecutive`` calls in a
row without any answer, or once ``budget_s`` seconds in total were spent in calls without any
answer, whichever comes first (defaults: 5 calls, 300 s; so a dead endpoint costs at most
5 x the request timeout, and never more than about 300 s + one timeout).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

GIVE_UP_AFTER = 5
FAILURE_BUDGET_S = 300.0


@dataclass
class CostLog:
    """Counts of what a backend did (see the module docstring)."""

    calls: int = 0
    requests: int = 0
    failures: int = 0
    unusable: int = 0
    skipped: int = 0
    images: int = 0
    seconds: float = 0.0
    tokens: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def failure_note(self) -> Optional[str]:
        """``'3 of 104 requests failed'`` (+ skipped ones), or ``None`` when none failed."""
        if not self.failures and not self.skipped:
            return None
        note = f"{self.failures} of {self.requests} requests failed"
        if self.unusable:
            note += f" ({self.unusable} answered no usable text)"
        if self.skipped:
            note += f", {self.skipped} not sent (endpoint given up)"
        return note


@dataclass
class FailureBudget:
    """Gives up after ``max_consecutive`` unanswered calls in a row or ``budget_s`` seconds of them."""

    max_consecutive: int = GIVE_UP_AFTER
    budget_s: float = FAILURE_BUDGET_S
    consecutive: int = 0
    spent_s: float = 0.0
    last_error: str = ""

    def __post_init__(self):
        if int(self.max_consecutive) < 1:
            raise ValueError(f"give_up_after must be >= 1, got {self.max_consecutive}")
        if not float(self.budget_s) > 0:
            raise ValueError(f"failure_budget_s must be > 0, got {self.budget_s}")

    def record(self, answered: bool, seconds: float, error: str = "") -> None:
        """One call: ``answered`` when at least one of its requests got an answer."""
        if answered:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.spent_s += float(seconds)
        self.last_error = error or self.last_error

    @property
    def exhausted(self) -> bool:
        return self.consecutive >= self.max_consecutive or self.spent_s >= self.budget_s

    def reason(self) -> str:
        why = (f"{self.consecutive} calls in a row without an answer"
               if self.consecutive >= self.max_consecutive
               else f"{self.spent_s:.0f} s spent in calls without an answer (budget {self.budget_s:g} s)")
        return why + (f"; last: {self.last_error}" if self.last_error else "")
