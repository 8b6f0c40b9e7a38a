"""The plots of ``openood-immuno report``: per run, ROC curves and ID-vs-OOD score histograms
(``<run>_roc_hist.png``) and the per-class EVT thresholds (``<run>_evt_thresholds.png``).

Only the files a run's ``run.json`` lists are read (``scores_<set>.npz``, ``artifacts.npz``); a file
that cannot be read is named in ``problems`` (see :mod:`openood_immuno.experiments.report`, which
finds the runs and calls :func:`plot_run`).
"""
from __future__ import annotations

import textwrap

from pathlib import Path

import numpy as np

from .report import _READ_ERRORS, _unreadable


def _load_npz(path: Path, required: tuple[str, ...], problems: list[str]):
    """The arrays of an ``.npz`` (all of ``required`` must be there); ``None`` if unreadable."""
    try:
        with np.load(path) as data:
            missing = [k for k in required if k not in data]
            if missing:
                raise KeyError(f"no array {missing[0]!r}")
            return {k: np.asarray(data[k]) for k in data.files}
    except _READ_ERRORS as exc:
        _unreadable(problems, path, exc)
        return None


def _load_scores(path: Path, problems: list[str]):
    """A ``scores_<set>.npz`` whose ``conf`` are finite numbers, one ``label`` each; else ``None``
    with the file named in ``problems`` (never scikit-learn's bare "Input contains NaN")."""
    data = _load_npz(path, ("conf", "label"), problems)
    if data is None:
        return None
    conf, label = data["conf"], data["label"]
    try:
        if conf.ndim != 1 or label.shape != conf.shape:
            raise ValueError(f"conf {conf.shape} and label {label.shape} are not two lists of one length")
        bad = int((~np.isfinite(conf.astype(np.float64))).sum())
        if bad:
            raise ValueError(f"{bad} of {conf.size} scores are NaN or inf")
    except (ValueError, TypeError) as exc:
        _unreadable(problems, path, exc)
        return None
    return data


def _shared_bins(score_sets: list, bins: int = 40) -> np.ndarray:
    """40 bins over the range of every set's finite confidences (one grid for all histograms)."""
    values = [np.asarray(s["conf"], dtype=np.float64).ravel() for s in score_sets if s is not None]
    values = np.concatenate(values) if values else np.zeros(0)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        center = float(values[0]) if values.size else 0.0
        return np.linspace(center - 0.5, center + 0.5, bins + 1)
    return np.linspace(values.min(), values.max(), bins + 1)


def evt_all_pooled_note(num_classes: int, meta: dict) -> str:
    """Why every class uses the pooled Weibull fit (written on the EVT plot)."""
    args = meta.get("pp_args") or {}
    need = max(3, int(args.get("evt_min_samples", 5)))
    fitted = ((meta.get("status") or {}).get("postprocessor_status") or {}).get("evt_fit")
    source = fitted or f"evt_fit: {args.get('evt_fit', 'val')}"   # what the fit used (a fallback says so)
    return (f"every one of the {num_classes} classes fell back to the pooled Weibull fit:\n"
            f"each has fewer than {need} calibration scores (max(3, evt_min_samples); fitted on {source}),\n"
            "or its own fit failed, so all thresholds are equal.\n"
            "Per-class thresholds need more calibration images per class.")


def plot_run(run: dict, out_dir: Path, problems: list[str] | None = None) -> list[Path]:
    """ROC curves per OOD set, ID-vs-OOD score histograms, per-class EVT thresholds (if any).

    Only the files the run's ``run.json`` lists are read; plots are named after the run folder.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    problems = [] if problems is None else problems
    folder, files = run["folder"], run["meta"].get("files", [])
    title, stem = run["name"], run["folder"].name
    scores = {}
    for name in sorted(f for f in files if f.startswith("scores_") and f.endswith(".npz")):
        loaded = _load_scores(folder / name, problems)
        if loaded is not None:
            scores[name.removeprefix("scores_").removesuffix(".npz")] = loaded
    written = []
    id_scores = scores.pop("id", None)
    if id_scores is None and run["protocol"] != "stream":
        scores = {}  # OOD lists alone, without their ID scores, make no ROC
    if scores:
        fig, (ax_roc, ax_hist) = plt.subplots(1, 2, figsize=(11, 4.2))
        # every histogram is an outline on shared bins (ID black, thicker), so overlapping sets stay
        # readable; fills of 35-60% opacity hid each other
        bins = _shared_bins([id_scores] + list(scores.values()))
        if id_scores is not None:
            ax_hist.hist(id_scores["conf"], bins=bins, density=True, histtype="step", color="k", lw=1.8,
                         label="ID (test)")
        for name, s in scores.items():
            # openood protocol: the OOD list alone (ID from scores_id); stream protocol: a whole
            # ID + OOD stream (label -1 = OOD)
            if id_scores is None:
                conf, is_ood = s["conf"], (s["label"] == -1).astype(int)
                if name == next(iter(scores)):  # ID scores differ a little from stream to stream
                    ax_hist.hist(conf[is_ood == 0], bins=bins, density=True, histtype="step", color="k",
                                 lw=1.8, label=f"ID (in the {name} stream)")
                ood_conf = conf[is_ood == 1]
            else:
                conf = np.concatenate([id_scores["conf"], s["conf"]])
                is_ood = np.concatenate([np.zeros(len(id_scores["conf"])), np.ones(len(s["conf"]))])
                ood_conf = s["conf"]
            fpr, tpr, _ = roc_curve(is_ood, -conf)
            line, = ax_roc.plot(fpr, tpr, label=name)
            ax_hist.hist(ood_conf, bins=bins, density=True, histtype="step", lw=1.2, color=line.get_color(),
                         label=name)
        ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax_roc.set(xlabel="ID flagged OOD (FPR)", ylabel="OOD flagged OOD (TPR)",
                   title=f"ROC ({run['protocol']} protocol)")
        fig.suptitle(textwrap.fill(title, 110), fontsize=9)   # a label with its regime and marks is long
        ax_hist.set(xlabel="confidence (higher = more ID)", ylabel="density", title="score histograms")
        ax_roc.legend(fontsize=8)
        ax_hist.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{stem}_roc_hist.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    data = _load_npz(folder / "artifacts.npz", (), problems) \
        if "artifacts.npz" in files else None
    if data:
        if "evt_threshold" in data:
            thr = np.asarray(data["evt_threshold"])
            pooled = np.asarray(data["evt_pooled"]) if "evt_pooled" in data else np.zeros(len(thr), bool)
            fig, ax = plt.subplots(figsize=(8, 3.5))
            idx = np.arange(len(thr))
            ax.plot(idx[~pooled], thr[~pooled], ".", ms=3, label=f"per-class fit ({int((~pooled).sum())})")
            ax.plot(idx[pooled], thr[pooled], "x", ms=3, label=f"pooled fit ({int(pooled.sum())})")
            ax.legend(fontsize=8)
            ax.set(xlabel="ID class index", ylabel="DIS threshold (Weibull CDF = 0.5)",
                   title=textwrap.fill(f"per-class EVT thresholds: {title}", 80))
            if len(thr) and pooled.all():
                ax.text(0.5, 0.5, evt_all_pooled_note(len(thr), run["meta"]), transform=ax.transAxes,
                        ha="center", va="center", fontsize=8, wrap=True,
                        bbox={"facecolor": "lightyellow", "edgecolor": "0.5"})
            fig.tight_layout()
            path = out_dir / f"{stem}_evt_thresholds.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written
