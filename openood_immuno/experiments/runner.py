"""Benchmark runner without OpenOOD: reads OpenOOD's data_root, scores from cached features.

Image features are computed once per (model, weights, preprocessing, list) and cached, so
K postprocessors cost one backbone pass. Two protocols:

* ``openood`` (OpenOOD v1.5's ``Evaluator``): the ID test set is scored first, then every OOD
  set in the order ssb_hard, ninco, inaturalist, textures, openimage_o, one
  ``score_feature_set`` call per list after one ``reset()``, exactly the calls the Evaluator
  makes; whether test-time state carries from list to list is the postprocessor's own rule
  (ANTS starts every list from empty memory by default, ``reset_each_list``).
* ``stream`` (the ANTS paper's protocol): for each OOD set, the ID test set and that OOD set
  are mixed into one stream shuffled with ``seed``; the postprocessor is ``reset()`` before
  each stream. Several seeds give a mean and a standard deviation. For stateless scorers the
  two protocols give the same numbers.

**Seeds.** ``seeds`` reshuffle the streams (``stream``) and, for postprocessors that train
(``pp.trains``), are the training seed: ``pp`` is refitted once per seed with its ``seed``
parameter set to it (in the ``stream`` protocol that fit scores the streams of the same seed),
so the reported std covers training in both protocols. ``seeds=None``: one fit with the
postprocessor's own ``seed`` (and stream seed 0).

Rows and columns match ``Evaluator.eval_ood()``: near sets, ``nearood`` (their mean), far
sets, ``farood`` (their mean); FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC, in percent, then

* ``ACC_zeroshot``: frozen CLIP's top-1 accuracy on the ID test set (``argmax_c cos(v, t_c)``);
* ``ID_reject@tau`` and ``F1@tau`` (only for postprocessors that decide,
  ``pp.decision_threshold()`` not ``None``): the share of ID test images the postprocessor's own
  reject decision rejects (what its ``tau`` targets; the same in every row of the openood
  protocol) and the F1 of OOD detection at that decision.

``ACC`` is the accuracy of the postprocessor's own predictions on the ID test set: what
OpenOOD reports with the net's adapter hook installed (``immuno``: the vaccinated
classifier); for stateless scorers that predict with the net's classifier it equals
``ACC_zeroshot``. The net's adapter hook is removed after each postprocessor.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from openood_immuno.core.redact import redact, redact_all
from openood_immuno.data.benchmarks import NUM_CLASSES, BenchmarkLists, ListSpec
from openood_immuno.data.lists import ImglistDataset, check_regular_images, make_loader, read_imglist
from openood_immuno.data.features import FeatureSet, LazyFeatures, extract_features
from openood_immuno.core.metrics import METRIC_NAMES, compute_all_metrics, f1_at_threshold
from openood_immuno.postprocessors.base import ImmunoPostprocessor
from .protocols import PROTOCOLS
from openood_immuno.core.status import RunStatus, run_status

log = logging.getLogger(__name__)
RESULT_COLUMNS = (*METRIC_NAMES, "ACC_zeroshot")
DECISION_COLUMN = "F1@tau"
ID_REJECT_COLUMN = "ID_reject@tau"
#: the columns of a postprocessor that decides, after RESULT_COLUMNS (F1@tau stays last)
DECISION_COLUMNS = (ID_REJECT_COLUMN, DECISION_COLUMN)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


REQUIRED_ROLES = ("id_test",)  # with every OOD list; train and val lists are checked if present


def validate_benchmark(data_root: str, lists: BenchmarkLists,
                       num_classes: Optional[int]) -> dict[str, Optional[dict]]:
    """Check every list of the benchmark before any model is built; the lists' content keys.

    The ID test list and every OOD list must exist; ID train/val and OOD val lists are checked
    when present (a postprocessor that needs a missing one says so when it asks). Each list is
    parsed as the runner will parse it (:func:`read_imglist`: encoding, labels in range, no -1
    in ID lists, no duplicated lines, not empty), and every listed image that exists must be a
    regular file (a FIFO or device would block the run). Returns ``{role: {list, data_dir, sha256,
    images} or None}`` (``None``: optional list absent), the lists' part of a run's key.
    """
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"data root {data_root!r} not found: check --data-root (it must be "
                                "OpenOOD's data_root, the folder holding benchmark_imglist/)")
    keys: dict[str, Optional[dict]] = {}
    required = {*REQUIRED_ROLES, *(f"ood:{name}" for name in lists.ood)}
    for role, spec in lists.roles().items():
        path = os.path.join(data_root, spec.imglist)
        if role not in required and not os.path.isfile(path):
            keys[role] = None
            continue
        rows = read_imglist(path, num_classes, id_list=role.startswith("id_"))
        check_regular_images(os.path.join(data_root, spec.data_dir), rows, path)
        keys[role] = {"list": spec.imglist, "data_dir": spec.data_dir, "images": len(rows),
                      "sha256": _sha256(path)}
    return keys


class FeatureStore:
    """Cached image features of every list of a benchmark under one net; with ``local`` (some
    postprocessor ``needs_local_features``), per-patch features too, from the same backbone pass,
    and every postprocessor scores the global rows of those entries."""

    def __init__(self, net, data_root: str, lists: BenchmarkLists, id_name: str = "imagenet",
                 batch_size: int = 128, num_workers: int = 2, progress: bool = True, local: bool = False):
        self.net, self.data_root, self.lists, self.local = net, data_root, lists, local
        self.num_classes = NUM_CLASSES.get(id_name)
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self._sets: dict[str, FeatureSet] = {}
        self._id_features: Optional[LazyFeatures] = None

    def loader(self, spec: ListSpec):
        """Loader of one list; a list of ``lists.id`` is read as an ID list (no label -1)."""
        id_list = spec.id_list or spec in self.lists.id.values()
        dataset = ImglistDataset(self.data_root, spec, self.net.preprocess, self.num_classes, id_list)
        return make_loader(dataset, self.batch_size, self.num_workers)

    def get(self, key: str, spec: ListSpec) -> FeatureSet:
        if key not in self._sets:
            self._sets[key] = extract_features(self.net, self.loader(spec), key, self.progress,
                                               local=self.local)
        return self._sets[key]

    def id_features(self) -> LazyFeatures:
        """ID splits, each list read only if a postprocessor asks for it; shared by every
        postprocessor evaluated on this store, so a split is loaded once. Global features only,
        also with ``local``: what ``fit`` reads (no method fits on per-patch features; GL-MCM is
        zero-shot), so Immuno-VLM's training shots never pay for local features."""
        if self._id_features is None:
            self._id_features = LazyFeatures(self.net, {s: (lambda spec=spec: self.loader(spec))
                                                        for s, spec in self.lists.id.items()},
                                             self.progress)
        return self._id_features


def _concat(a: FeatureSet, b: FeatureSet, name: str) -> FeatureSet:
    local = None if a.local is None or b.local is None else torch.cat([a.local, b.local])
    return FeatureSet(name, torch.cat([a.features, b.features]), torch.cat([a.labels, b.labels]),
                      a.image_paths + b.image_paths, local)


def _permute(fs: FeatureSet, order: torch.Tensor) -> FeatureSet:
    return FeatureSet(fs.name, fs.features[order], fs.labels[order], [fs.image_paths[i] for i in order],
                      None if fs.local is None else fs.local[order])


def score_stream(pp: ImmunoPostprocessor, id_fs: FeatureSet, ood_fs: FeatureSet, seed: int,
                 batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paper protocol: one seeded shuffled stream of ID + OOD from a fresh state.

    Returns ``(pred, conf, label)`` in stream order (label -1 = OOD).
    """
    mixed = _concat(id_fs, ood_fs, f"{id_fs.name}+{ood_fs.name}")
    order = torch.randperm(len(mixed), generator=torch.Generator().manual_seed(seed))
    pp.reset()
    return pp.score_feature_set(_permute(mixed, order), batch_size)


def hyperparam_search(pp: ImmunoPostprocessor, id_val: FeatureSet, ood_val: FeatureSet,
                      batch_size: int) -> list:
    """OpenOOD's APS: the sweep value combination with the best ID-val vs OOD-val AUROC.

    Combinations are visited in OpenOOD's order (first parameter fastest); ties keep the first.
    ID val and OOD val are scored as two lists, as the Evaluator does.
    """
    names = list(pp.args_dict)
    combos = [tuple(reversed(c)) for c in itertools.product(*[pp.args_dict[n] for n in reversed(names)])]
    best, best_auroc = None, -1.0
    ood_val = replace(ood_val, labels=torch.full_like(ood_val.labels, -1))
    for combo in combos:
        pp.set_hyperparam(list(combo))
        pp.reset()
        scored = [pp.score_feature_set(fs, batch_size) for fs in (id_val, ood_val)]
        pred, conf, label = (np.concatenate(parts) for parts in zip(*scored))
        auroc = compute_all_metrics(conf, label, pred)[1]
        log.info("APS %s %s: AUROC %.4f", pp.name, dict(zip(names, combo)), auroc)
        if auroc > best_auroc:
            best, best_auroc = combo, auroc
    pp.set_hyperparam(list(best))
    pp.hyperparam_search_done = True
    return list(best)


@dataclass
class EvalResult:
    """Metrics table (percent) of one postprocessor: ``rows[name]`` holds one value per
    ``columns`` entry: OpenOOD's FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC (the default), and in
    :func:`evaluate`'s results ACC_zeroshot[, F1@tau] after them."""

    postprocessor: str
    rows: dict[str, list[float]]
    std: Optional[dict[str, list[float]]] = None
    hyperparams: Optional[dict] = None
    status: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    scores: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    columns: tuple[str, ...] = METRIC_NAMES
    #: the name with its regime (``immuno [wordnet, 16-shot x 20]``) and what it describes
    #: (bank, SHA-256, training regime: the postprocessor's ``describe()``)
    label: str = ""
    describe: dict = field(default_factory=dict)
    random_weights: bool = False   # the net was randomly initialised (marked RANDOM WEIGHTS)

    def __post_init__(self) -> None:
        bad = {k: len(v) for k, v in self.rows.items() if len(v) != len(self.columns)}
        bad.update({f"std of {k}": len(v) for k, v in (self.std or {}).items() if len(v) != len(self.columns)})
        if bad:
            raise ValueError(f"result of {self.postprocessor}: rows must have one value per column "
                             f"{list(self.columns)}, got {bad}")

    @property
    def run_status(self) -> RunStatus:
        """ok / random-weights / stand-in / partial / degraded, from the postprocessor's
        ``status()`` and the net (:mod:`openood_immuno.core.status`)."""
        return run_status(self.status, self.random_weights)

    def format(self) -> str:
        """The console table: one row per set, the metric columns, then ``status`` (as in
        ``ood.csv``: ``ok``, or the state of a degraded or partial run, whose reasons are the
        line above the table)."""
        # "100.00±100.00" must never be cut, nor a column name run into its neighbour
        width = max(10 if self.std is None else 15, *(len(m) + 2 for m in self.columns))
        status = self.run_status
        lines = [] if status.ok else [f"{status.tag(self.postprocessor)}: "
                                      + status.meaning.replace("the method's", f"{self.postprocessor}'s")]
        if self.label and self.label != self.postprocessor:
            lines.append(self.label)
        lines.append(f"{'':<14}" + "".join(f"{m:>{width}}" for m in self.columns) + "  status")
        cell = "ok" if status.ok else status.state.upper()
        for name, vals in self.rows.items():
            cells = [f"{v:.2f}" if self.std is None else f"{v:.2f}±{s:.2f}"
                     for v, s in zip(vals, (self.std or {}).get(name, vals))]
            lines.append(f"{name:<14}" + "".join(c.rjust(width) for c in cells) + f"  {cell}")
        return "\n".join(lines)

    def write_files(self, folder: str) -> list[str]:
        """Write the result into ``folder`` (``results.write_run`` gives a fresh one); file names.

        ``ood.csv`` in OpenOOD's results layout (dataset, FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC),
        then ACC_zeroshot (and ID_reject@tau, F1@tau for postprocessors that decide; runs over
        several seeds add ``std_*``), a ``label`` column (the name with its regime, e.g. ``immuno
        [wordnet, 16-shot x 20]``) and a last ``status`` column (``ok`` or ``DEGRADED: ...``);
        ``scores_<set>.npz``; ``artifacts.npz`` if any.
        """
        os.makedirs(folder, exist_ok=True)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["dataset", *self.columns]
                        + (["std_" + m for m in self.columns] if self.std else []) + ["label", "status"])
        label = self.run_status.label
        for name, vals in self.rows.items():
            extra = [f"{s:.2f}" for s in self.std[name]] if self.std else []
            writer.writerow([name, *[f"{v:.2f}" for v in vals], *extra, self.label or self.postprocessor,
                             label])
        with open(os.path.join(folder, "ood.csv"), "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
        files = ["ood.csv"]
        for name, (pred, conf, label_) in self.scores.items():
            files.append(f"scores_{name}.npz")
            np.savez_compressed(os.path.join(folder, files[-1]), pred=pred, conf=conf, label=label_)
        if self.artifacts:
            files.append("artifacts.npz")
            np.savez_compressed(os.path.join(folder, files[-1]), **self.artifacts)
        return files


def described(pp) -> dict:
    """``label`` (the postprocessor's name with its regime, e.g. ``immuno [wordnet, 16-shot x
    20]``) and ``describe`` of a fitted postprocessor, for :class:`EvalResult`."""
    suffix = pp.label_suffix() if hasattr(pp, "label_suffix") else ""
    return {"label": redact(f"{pp.name} {suffix}".strip()),
            "describe": redact_all(pp.describe() if hasattr(pp, "describe") else {})}


def zero_shot_accuracy(net, id_fs: FeatureSet) -> float:
    """Frozen CLIP's top-1 accuracy on ``id_fs`` (``ACC_zeroshot``): ``argmax_c cos(v, t_c)``
    with the net's class text features, never through an adapter hook."""
    logits = id_fs.features.float() @ net.class_text_features.float().cpu().T
    return float((logits.argmax(1) == id_fs.labels).double().mean())


def set_metrics(pred: np.ndarray, conf: np.ndarray, label: np.ndarray,
                threshold: Optional[float]) -> list[float]:
    """``[FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC]`` (fractions) of one ID + OOD set, and
    ID_reject@tau and F1@tau when the postprocessor decides (``threshold``: its reject
    threshold on conf)."""
    out = compute_all_metrics(conf, label, pred)
    if threshold is None:
        return out
    is_id = np.asarray(label) != -1
    return out + [float(np.mean(np.asarray(conf)[is_id] < threshold)), f1_at_threshold(conf, label, threshold)]


def _table(per_set: Mapping[str, list[float]], near: Sequence[str], far: Sequence[str],
           extra: Sequence[str], acc_zeroshot: float) -> dict[str, list[float]]:
    """Rows in percent: each set's metrics (the ACC of the postprocessor's own predictions),
    the group means, ACC_zeroshot inserted after ACC."""
    rows: dict[str, list[float]] = {}
    for group, names in (("nearood", near), ("farood", far)):
        if not names:  # an OOD preset without near-OOD sets (the MOS four)
            continue
        for n in names:
            rows[n] = per_set[n]
        rows[group] = list(np.mean([per_set[n] for n in names], axis=0))
    for n in extra:
        rows[n] = per_set[n]
    return {k: [100 * x for x in v[:5]] + [100 * acc_zeroshot] + [100 * x for x in v[5:]]
            for k, v in rows.items()}


def _score(pp: ImmunoPostprocessor, id_fs: FeatureSet, ood_sets: Mapping[str, FeatureSet],
           protocol: str, stream_seed: int, batch_size: int,
           threshold: Optional[float]) -> tuple[dict[str, list[float]], dict]:
    """Metrics per OOD set of the fitted ``pp`` and the scores behind them."""
    metrics, scores = {}, {}
    if protocol == "openood":
        pp.reset()
        id_scores = scores["id"] = pp.score_feature_set(id_fs, batch_size)
        for name, fs in ood_sets.items():
            ood = scores[name] = pp.score_feature_set(fs, batch_size)
            metrics[name] = set_metrics(np.concatenate([id_scores[0], ood[0]]),
                                        np.concatenate([id_scores[1], ood[1]]),
                                        np.concatenate([id_scores[2], -np.ones_like(ood[2])]), threshold)
    else:
        for name, fs in ood_sets.items():
            ood = replace(fs, labels=torch.full_like(fs.labels, -1))
            pred, conf, label = scores[name] = score_stream(pp, id_fs, ood, stream_seed, batch_size)
            metrics[name] = set_metrics(pred, conf, label, threshold)
    return metrics, scores


def evaluate(pp: ImmunoPostprocessor, store: FeatureStore, protocol: str = "openood",
             seeds: Optional[Sequence[int]] = None, batch_size: int = 256) -> EvalResult:
    """Fit ``pp`` (once per seed if it trains), search its hyper-parameters if ``APS_mode``,
    and score every OOD set; mean (and std over several seeds) of the tables. Scores and
    artifacts kept are those of the first seed. The net's adapter hook is removed at the end
    (``pp`` then holds the fit of the last seed)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {PROTOCOLS}")
    lists = store.lists
    stream_seeds = list(seeds) if seeds is not None else [0]
    retrain = pp.trains and seeds is not None
    search = bool(pp.APS_mode and pp.args_dict and not pp.hyperparam_search_done)
    id_fs = ood_sets = None
    tables, scores, artifacts, chosen = [], {}, {}, {}
    try:
        for fit_seed in (stream_seeds if retrain else [None]):
            if fit_seed is not None:
                pp.params = pp.params.replace({"seed": fit_seed}, where=f"postprocessor '{pp.name}'",
                                              prefix=f"{pp.name}.")
            pp.fit(store.net, store.id_features())
            if search:
                chosen[fit_seed] = dict(zip(pp.args_dict, hyperparam_search(
                    pp, store.get("val_imagenet", lists.id["val"]), store.get("val_ood", lists.ood_val),
                    batch_size)))
            if id_fs is None:
                id_fs = store.get("test_imagenet", lists.id["test"])
                ood_sets = {n: store.get(n, spec) for n, spec in lists.ood.items()}
                acc_zeroshot = zero_shot_accuracy(store.net, id_fs)
            threshold = pp.decision_threshold()
            runs = [fit_seed] if retrain else stream_seeds
            for stream_seed in (runs if protocol == "stream" else runs[:1]):
                per_set, scored = _score(pp, id_fs, ood_sets, protocol, stream_seed or 0, batch_size,
                                         threshold)
                if not tables:
                    scores, artifacts = scored, pp.artifacts()  # the first seed's
                tables.append(_table(per_set, list(lists.near), list(lists.far), list(lists.extra),
                                     acc_zeroshot))
    finally:
        clear = getattr(store.net, "clear_adapter", None)
        if clear is not None:
            clear()
    rows = {k: list(np.mean([t[k] for t in tables], axis=0)) for k in tables[0]}
    std = ({k: list(np.std([t[k] for t in tables], axis=0)) for k in tables[0]}
           if len(tables) > 1 else None)
    hyper = (None if not chosen else chosen[None] if None in chosen
             else {f"seed {s}": c for s, c in chosen.items()})
    columns = RESULT_COLUMNS + (DECISION_COLUMNS if threshold is not None else ())
    return EvalResult(pp.name, rows, std, hyper, status=pp.status(), artifacts=artifacts,
                      scores=scores, columns=columns, **described(pp),
                      random_weights=bool(getattr(store.net, "random_weights", False)))
