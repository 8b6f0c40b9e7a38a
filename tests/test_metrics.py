import numpy as np
import pytest

from openood_immuno.core.metrics import compute_all_metrics


def test_perfect_separation():
    conf = np.array([0.9, 0.8, 0.7, 0.1, 0.2])
    label = np.array([0, 1, 2, -1, -1])
    pred = np.array([0, 1, 0, 0, 0])
    fpr, auroc, aupr_in, aupr_out, acc = compute_all_metrics(conf, label, pred)
    assert (fpr, auroc, aupr_in, aupr_out) == (0.0, 1.0, 1.0, 1.0)
    assert acc == pytest.approx(2 / 3)


def test_fpr95_is_share_of_id_flagged_ood_at_95_ood_recall():
    # 20 OOD scores 0..19 (low = OOD-like), 10 ID scores. To flag 95% of OOD (19 of 20) as
    # OOD the threshold must reach the 19th lowest OOD score, 18; every ID below 18 is then
    # flagged OOD too: ID scores 5, 10, 15 -> 3 of 10 -> FPR@95 = 0.3 (OpenOOD v1.5 convention).
    ood = np.arange(20, dtype=float)
    idc = np.array([5, 10, 15, 30, 31, 32, 33, 34, 35, 36], dtype=float)
    conf = np.concatenate([idc, ood])
    label = np.concatenate([np.zeros(10, int), -np.ones(20, int)])
    fpr = compute_all_metrics(conf, label, np.zeros_like(label))[0]
    assert fpr == pytest.approx(0.3)
    # The other convention (OOD accepted at 95% ID TPR) would give 0 here: the direction matters.
    accepted = np.mean(ood >= np.sort(idc)[int(np.floor(0.05 * 10))])
    assert accepted != pytest.approx(0.3)


def test_auroc_hand_computed():
    # ID {3, 1}, OOD {2, 0}: pairs (ID > OOD): (3>2),(3>0),(1>0) = 3 of 4 -> 0.75
    conf = np.array([3.0, 1.0, 2.0, 0.0])
    label = np.array([0, 0, -1, -1])
    assert compute_all_metrics(conf, label, np.zeros(4, int))[1] == pytest.approx(0.75)


def test_nan_scores_and_one_sided_labels_rejected():
    with pytest.raises(ValueError, match="NaN"):
        compute_all_metrics(np.array([np.nan, 1.0]), np.array([0, -1]), np.zeros(2, int))
    with pytest.raises(ValueError, match="both ID"):
        compute_all_metrics(np.array([0.5, 1.0]), np.array([0, 1]), np.zeros(2, int))
