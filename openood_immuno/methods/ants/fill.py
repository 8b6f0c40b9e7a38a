"""How well the MLLM filled ANTS's ENS and VSNL banks over a run (every stream of it).

ANTS is ANTS only when the banks it reads hold what the MLLM answered; with empty banks every
score is NegLabel's. :class:`BankFill` counts, per bank, what was asked of the MLLM (ENS: mined
images sent for a description; VSNL: similar names asked, ``vsnl_names_per_class`` per active
class) and what came back usable (a description that parses; names that parse), and how many
streams ended with the bank empty. :meth:`BankFill.problems` names what makes the run degraded:

* a bank its mode reads (``ada``: both; ``far_only``: ENS; ``near_only``: VSNL) got usable
  answers for fewer than ``min_bank_fill`` of what was asked;
* such a bank was empty at the end of a stream (the MLLM answered nothing usable, or no
  update ran: fewer than ``mine_min_cache`` mined images, a stream shorter than
  ``vsnl_start_batch``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass
class BankFill:
    """Counts over a run; :meth:`end_stream` closes one stream."""

    streams: int = 0
    ens_empty: int = 0
    vsnl_empty: int = 0
    ens_asked: int = 0
    ens_usable: int = 0
    vsnl_asked: int = 0
    vsnl_usable: int = 0

    def end_stream(self, ens_size: int, vsnl_size: int) -> None:
        self.streams += 1
        self.ens_empty += ens_size == 0
        self.vsnl_empty += vsnl_size == 0

    def closed(self, ens_size: int, vsnl_size: int) -> "BankFill":
        """A copy with the stream in progress closed (banks of the given sizes)."""
        out = replace(self)
        out.end_stream(ens_size, vsnl_size)
        return out

    def as_dict(self) -> dict:
        return asdict(self)

    def problems(self, reads_ens: bool, reads_vsnl: bool, min_fill: float) -> list[str]:
        """Why the banks make the run degraded (module docstring); ``[]`` when they do not."""
        out = []
        for bank, reads, asked, usable, empty, unit in (
                ("ENS", reads_ens, self.ens_asked, self.ens_usable, self.ens_empty, "images described"),
                ("VSNL", reads_vsnl, self.vsnl_asked, self.vsnl_usable, self.vsnl_empty, "names asked")):
            if not reads:
                continue
            if asked and usable < min_fill * asked:
                out.append(f"{bank}: {usable} usable of {asked} {unit} (below min_bank_fill {min_fill:g})")
            if empty:
                out.append(f"{bank} bank empty at the end of {empty} of {self.streams} streams"
                           + ("" if asked else f" (no {bank} update ran)"))
        return out
