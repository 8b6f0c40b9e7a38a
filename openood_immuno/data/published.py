"""Published result tables, quoted from the papers, as package data (torch-free).

One yml per paper table in ``openood_immuno/data/published/``: the paper (title, venue and arXiv id
where its text states them, else ``null``), the table, the benchmark it compares with (the
``--benchmark`` of ``openood-immuno eval``: ``openood``, ``mos``, ``immuno_vlm``), the ID set, the
backbone (and its open_clip name and weights), the direction of its FPR95 and what that rests on,
the columns, the decimals it prints and one row per method (``null`` where the paper reports nothing). Only numbers that are
in the paper texts are quoted.

Column names are ``<set>_<metric>``: ``<set>`` a row of our ``ood.csv`` (an OOD set, ``nearood``,
``farood``), ``<metric>`` one of ``auroc``, ``fpr95``, ``acc``; plus ``avg_fscore`` (Immuno-VLM's
last column). FPR95 directions: ``id_at_95_ood_tpr`` (OpenOOD v1.5: share of ID flagged OOD at 95%
OOD recall), ``ood_at_95_id_tpr`` (share of OOD accepted at 95% ID TPR: MCM, NegLabel), ``unstated``.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Optional

import yaml

FPR95_DIRECTIONS = {
    "id_at_95_ood_tpr": "share of ID flagged OOD at 95% OOD recall (OpenOOD v1.5)",
    "ood_at_95_id_tpr": "share of OOD accepted at 95% ID TPR (MCM, NegLabel)",
    "unstated": "direction unknown",
}
METRICS = ("auroc", "fpr95", "acc")
_PAPER_KEYS = ("short", "title", "venue", "arxiv")
_TABLE_KEYS = ("paper", "table", "benchmark", "id", "backbone", "open_clip", "fpr95_direction",
               "fpr95_direction_basis", "columns", "rows")


@dataclass(frozen=True)
class PublishedRow:
    method: str
    group: str
    backbone: str
    values: dict            # column -> float or None (not reported)


@dataclass(frozen=True)
class PublishedTable:
    file: str
    paper: dict
    table: str
    benchmark: str
    id: str
    backbone: str
    open_clip: dict
    fpr95_direction: str
    fpr95_direction_basis: str
    columns: tuple
    rows: tuple
    caption: Optional[str] = None
    column_notes: Optional[dict] = None
    decimals: int = 2            # as the paper prints its numbers

    def cell(self, value: Optional[float]) -> str:
        """A quoted number as the paper prints it, ``-`` where it reports none."""
        return "-" if value is None else f"{value:.{self.decimals}f}"

    @property
    def source(self) -> str:
        """``ANTS, Table 1``: the paper's short name and the table."""
        return f"{self.paper['short']}, {self.table}"


def _check(cond: bool, file: str, what: str) -> None:
    if not cond:
        raise ValueError(f"published table {file}: {what}")


def parse_table(data: dict, file: str) -> PublishedTable:
    """A :class:`PublishedTable` from one yml's mapping, checked (one line naming the file)."""
    _check(isinstance(data, dict), file, "not a mapping")
    missing = [k for k in _TABLE_KEYS if k not in data]
    _check(not missing, file, f"lacks {missing}")
    _check(all(k in (data["paper"] or {}) for k in _PAPER_KEYS), file, f"paper must name {_PAPER_KEYS}")
    _check(data["fpr95_direction"] in FPR95_DIRECTIONS, file,
           f"fpr95_direction {data['fpr95_direction']!r} not one of {sorted(FPR95_DIRECTIONS)}")
    columns = tuple(data["columns"])
    for c in columns:
        _check(c == "avg_fscore" or c.rpartition("_")[2] in METRICS, file, f"column {c!r} is not <set>_<metric>")
    rows = []
    for i, row in enumerate(data["rows"]):
        values = row.get("values") or []
        _check(len(values) == len(columns), file,
               f"row {i + 1} ({row.get('method')}) has {len(values)} values for {len(columns)} columns")
        _check(all(v is None or isinstance(v, (int, float)) for v in values), file,
               f"row {i + 1} ({row.get('method')}): values must be numbers or null")
        rows.append(PublishedRow(str(row["method"]), str(row.get("group", "")),
                                 str(row.get("backbone", data["backbone"])),
                                 {c: (None if v is None else float(v)) for c, v in zip(columns, values)}))
    return PublishedTable(file, dict(data["paper"]), str(data["table"]), str(data["benchmark"]), str(data["id"]),
                          str(data["backbone"]), dict(data["open_clip"]), data["fpr95_direction"],
                          str(data["fpr95_direction_basis"]), columns, tuple(rows), data.get("caption"),
                          data.get("column_notes") or {}, int(data.get("decimals", 2)))


def published_tables() -> list[PublishedTable]:
    """Every shipped table (``data/published/*.yml``), sorted by file name."""
    folder = resources.files("openood_immuno.data") / "published"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yml"):
            out.append(parse_table(yaml.safe_load(entry.read_text(encoding="utf-8")), entry.name))
    return out
