"""Metrics that ``report`` computes from a run's saved scores (``scores_<set>.npz``), for any scorer.

Per OOD set of a run: ``F1@TPR95`` (F1 of OOD detection, OOD positive, at the threshold that accepts
95% of the ID test images of the same scores: :func:`openood_immuno.core.metrics.f1_at_id_tpr`) and
``FPR95_id_tpr`` (share of OOD accepted at that threshold: FPR95 in the MCM / NegLabel direction,
:func:`~openood_immuno.core.metrics.fpr_at_id_tpr`). The ID scores are ``scores_id.npz`` (openood
protocol) or the ID part of the set's own stream (stream protocol). A run over several seeds saved
the scores of its first seed only: these metrics are of that seed (:func:`first_seed_only`).
"""
from __future__ import annotations

import numpy as np

from openood_immuno.core.metrics import f1_at_id_tpr, fpr_at_id_tpr

TPR = 0.95


def first_seed_only(run: dict) -> bool:
    """The run averaged several seeds, but its saved scores are the first seed's."""
    return len(run["meta"].get("seeds") or []) > 1 and (run["protocol"] == "stream" or run["meta"].get("trains"))


def score_metrics(run: dict, sets, problems: list[str]) -> dict[str, dict[str, float]]:
    """``{set: {"F1@TPR95": x, "FPR95_id_tpr": y}}`` in percent for each of ``sets`` whose scores the
    run saved (a set whose file is missing or unreadable is left out and named in ``problems``)."""
    from .plots import _load_scores   # here: plots imports report, which imports this module's users

    files = set(run["meta"].get("files") or [])
    folder = run["folder"]
    id_scores = None
    if run["protocol"] != "stream" and "scores_id.npz" in files:
        id_scores = _load_scores(folder / "scores_id.npz", problems)
    out = {}
    for name in sets:
        if f"scores_{name}.npz" not in files:
            continue
        data = _load_scores(folder / f"scores_{name}.npz", problems)
        if data is None:
            continue
        conf, label = np.asarray(data["conf"], np.float64), np.asarray(data["label"])
        if run["protocol"] != "stream":
            if id_scores is None:
                continue
            conf = np.concatenate([np.asarray(id_scores["conf"], np.float64), conf])
            label = np.concatenate([np.asarray(id_scores["label"]), -np.ones(len(data["conf"]), int)])
        if (label == -1).all() or not (label == -1).any():
            problems.append(f"{folder / f'scores_{name}.npz'}: no ID or no OOD scores (F1@TPR95 left out)")
            continue
        out[name] = {"F1@TPR95": 100 * f1_at_id_tpr(conf, label, TPR),
                     "FPR95_id_tpr": 100 * fpr_at_id_tpr(conf, label, TPR)}
    return out
