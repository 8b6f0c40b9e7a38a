"""The grouped negative-label score against a brute-force loop over groups."""
import pytest
import torch

from openood_immuno.scores.grouped import group_layout, grouped_id_mass, negative_label_score


def brute_force(logits, num_id, k, seed, permute=True):
    """The reference codes' loop: drop the last n mod K, permute, K contiguous groups, softmax each."""
    pos, neg = logits[:, :num_id], logits[:, num_id:]
    drop = neg.shape[1] % k
    if drop:
        neg = neg[:, :-drop]
    if permute:
        neg = neg[:, torch.randperm(neg.shape[1], generator=torch.Generator().manual_seed(seed))]
    g = neg.shape[1] // k
    per_group = []
    for i in range(k):
        probs = torch.softmax(torch.cat([pos, neg[:, i * g:(i + 1) * g]], dim=1).double(), dim=1)
        per_group.append(probs[:, :num_id].sum(dim=1))
    return torch.stack(per_group, dim=1).mean(dim=1)


@pytest.mark.parametrize("n_neg,k,seed", [(1000, 10, 0), (1003, 10, 0), (257, 7, 3), (50, 50, 1)])
def test_neglabel_grouping_equals_brute_force(n_neg, k, seed):
    torch.manual_seed(n_neg)
    logits = 30 * torch.randn(6, 20 + n_neg)
    got = grouped_id_mass(logits, 20, "neglabel", n_groups=k, seed=seed)
    assert torch.allclose(got.double(), brute_force(logits, 20, k, seed), atol=1e-6)


@pytest.mark.parametrize("n_neg,group_size", [(1000, 100), (250, 100), (99, 100), (100, 100), (1234, 10)])
def test_ants_grouping_equals_brute_force(n_neg, group_size):
    torch.manual_seed(n_neg)
    logits = 30 * torch.randn(5, 12 + n_neg)
    k = max(1, n_neg // group_size)
    got = grouped_id_mass(logits, 12, "ants", group_size=group_size, seed=0)
    # a bank of at most group_size rows is one full softmax in the ANTS code: no permutation
    assert torch.allclose(got.double(), brute_force(logits, 12, k, 0, permute=k > 1), atol=1e-6)


def test_the_two_groupings_agree_on_the_published_setting():
    logits = 100 * torch.randn(4, 1000 + 10_000) / 10
    a = grouped_id_mass(logits, 1000, "neglabel", n_groups=100)
    b = grouped_id_mass(logits, 1000, "ants", group_size=100)
    assert torch.equal(a, b)


def test_layouts_and_errors():
    assert group_layout(10_003, "neglabel", n_groups=100) == (100, 10_000)
    assert group_layout(250, "ants", group_size=100) == (2, 250)
    assert group_layout(30, "ants", group_size=100) == (1, 30)
    with pytest.raises(ValueError, match="exceeds"):
        group_layout(5, "neglabel", n_groups=10)
    with pytest.raises(ValueError, match="grouping"):
        group_layout(5, "other")
    with pytest.raises(ValueError, match="num_id"):
        grouped_id_mass(torch.zeros(2, 5), 5)


def test_score_is_extreme_for_clear_cases_and_pred_is_over_id_only():
    id_text = torch.eye(4)[:2]          # ID classes along e0, e1
    neg_text = torch.eye(4)[2:]         # negatives along e2, e3
    feats = torch.tensor([[0, 1.0, 0, 0], [0, 0.1, 0, 1.0]])
    pred, score = negative_label_score(feats, id_text, neg_text, 100.0, "neglabel", n_groups=1)
    assert pred.tolist() == [1, 1]       # arg-max over the ID classes, never a negative
    assert score[0] > 0.99 and score[1] < 0.01
