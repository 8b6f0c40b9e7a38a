"""OOD metrics computed exactly as OpenOOD v1.5 does (``openood/evaluators/metrics.py``).

Convention (OpenOOD v1.5): OOD is the positive class and ``conf`` is higher for ID.

* FPR@95 = share of **ID samples flagged OOD** at the first threshold where 95% of OOD
  samples are flagged OOD (TPR of OOD >= 0.95). The MCM and NegLabel papers use the other
  direction (share of OOD accepted at 95% ID TPR); numbers in the two conventions differ.
* AUROC of OOD-vs-ID with score ``-conf``.
* AUPR_IN: precision-recall AUC with ID positive and score ``conf``;
  AUPR_OUT: with OOD positive and score ``-conf``.
* ACC: top-1 accuracy over the ID samples (``label != -1``).
* F1@tau (:func:`f1_at_threshold`, postprocessors that decide): F1 of OOD detection when every
  sample with ``conf`` below the postprocessor's threshold is rejected.
* F1@TPR95 (:func:`f1_at_id_tpr`, any scorer): the same F1 at the threshold that accepts 95% of
  the ID test samples (:func:`id_tpr_threshold`); :func:`fpr_at_id_tpr` is the share of OOD
  accepted there (FPR95 in the MCM / NegLabel direction).

All values are fractions in [0, 1]; tables multiply by 100 like OpenOOD.
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

METRIC_NAMES = ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC")


def compute_all_metrics(conf: np.ndarray, label: np.ndarray, pred: np.ndarray,
                        recall: float = 0.95) -> list[float]:
    """``[FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC]`` for ID (``label >= 0``) vs OOD (``label == -1``)."""
    conf = np.asarray(conf, dtype=np.float64)
    label = np.asarray(label)
    pred = np.asarray(pred)
    if not np.all(np.isfinite(conf)):
        raise ValueError(f"{int((~np.isfinite(conf)).sum())} confidence scores are NaN or inf: "
                         "check the features and the postprocessor's parameters")
    is_ood = (label == -1).astype(int)
    if is_ood.all() or not is_ood.any():
        raise ValueError("metrics need both ID (label >= 0) and OOD (label == -1) samples")
    fpr_list, tpr_list, _ = skm.roc_curve(is_ood, -conf)
    fpr = float(fpr_list[np.argmax(tpr_list >= recall)])
    auroc = float(skm.auc(fpr_list, tpr_list))
    prec_in, rec_in, _ = skm.precision_recall_curve(1 - is_ood, conf)
    prec_out, rec_out, _ = skm.precision_recall_curve(is_ood, -conf)
    aupr_in = float(skm.auc(rec_in, prec_in))
    aupr_out = float(skm.auc(rec_out, prec_out))
    id_mask = label != -1
    acc = float(np.mean(pred[id_mask] == label[id_mask]))
    return [fpr, auroc, aupr_in, aupr_out, acc]


def f1_at_threshold(conf: np.ndarray, label: np.ndarray, threshold: float) -> float:
    """F1 of OOD detection (OOD positive) when samples with ``conf < threshold`` are rejected:
    ``2 TP / (2 TP + FP + FN)``, TP = OOD rejected, FP = ID rejected, FN = OOD accepted."""
    conf = np.asarray(conf, dtype=np.float64)
    is_ood = np.asarray(label) == -1
    if is_ood.all() or not is_ood.any():
        raise ValueError("F1@tau needs both ID (label >= 0) and OOD (label == -1) samples")
    rejected = conf < threshold
    tp = int(np.sum(rejected & is_ood))
    fp = int(np.sum(rejected & ~is_ood))
    fn = int(np.sum(~rejected & is_ood))
    return 2 * tp / (2 * tp + fp + fn)


def id_tpr_threshold(id_conf: np.ndarray, tpr: float = 0.95) -> float:
    """The threshold that accepts (``conf >= tau``) a share ``tpr`` of the ID samples:
    ``tau = s_(k+1)``, the (k+1)-th smallest ID confidence with ``k = floor((1 - tpr) n)``, so
    rejecting ``conf < tau`` rejects at most ``k`` of the ``n`` ID samples (fewer when confidences
    tie at ``tau``) and accepts at least ``tpr`` of them."""
    conf = np.sort(np.asarray(id_conf, dtype=np.float64))
    if conf.size == 0 or not 0 < tpr <= 1:
        raise ValueError(f"id_tpr_threshold needs ID scores and 0 < tpr <= 1, got {conf.size} scores, tpr {tpr}")
    k = int(np.floor(round((1 - tpr) * conf.size, 9)))
    return float(conf[min(k, conf.size - 1)])


def f1_at_id_tpr(conf: np.ndarray, label: np.ndarray, tpr: float = 0.95) -> float:
    """F1@TPR95: :func:`f1_at_threshold` (OOD positive, ``2 TP / (2 TP + FP + FN)``) at
    ``tau = id_tpr_threshold(conf[label != -1], tpr)``: the threshold is set on the ID samples
    of the same scores, never on the OOD ones."""
    conf = np.asarray(conf, dtype=np.float64)
    is_ood = np.asarray(label) == -1
    if is_ood.all() or not is_ood.any():
        raise ValueError("F1@TPR95 needs both ID (label >= 0) and OOD (label == -1) samples")
    return f1_at_threshold(conf, label, id_tpr_threshold(conf[~is_ood], tpr))


def fpr_at_id_tpr(conf: np.ndarray, label: np.ndarray, tpr: float = 0.95) -> float:
    """Share of OOD samples accepted (``conf >= tau``) at ``tau = id_tpr_threshold(ID conf, tpr)``:
    FPR95 in the direction of the MCM and NegLabel papers (not OpenOOD v1.5's ``FPR@95``)."""
    conf = np.asarray(conf, dtype=np.float64)
    is_ood = np.asarray(label) == -1
    if is_ood.all() or not is_ood.any():
        raise ValueError("FPR at ID TPR needs both ID (label >= 0) and OOD (label == -1) samples")
    return float(np.mean(conf[is_ood] >= id_tpr_threshold(conf[~is_ood], tpr)))
