"""fused_ants_scores equals the five separate grouped scores ANTS computes per batch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from openood_immuno.scores.ants import balanced_bank_score, bank_score, fused_ants_scores
from openood_immuno.scores.grouped import negative_label_score


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("n_ens,n_vsnl", [(0, 0), (37, 0), (0, 12), (250, 12), (1200, 95)])
def test_fused_scores_equal_the_separate_calls(n_ens, n_vsnl):
    d, c, batch, repeats, gs, seed = 32, 50, 64, 10, 20, 3
    x, id_text, neg = _unit(batch, d, 0), _unit(c, d, 1), _unit(1000, d, 2)
    ens = _unit(n_ens, d, 4) if n_ens else None
    vsnl = _unit(n_vsnl, d, 5) if n_vsnl else None
    got = fused_ants_scores(x, id_text, neg, ens, vsnl, 100.0, n_groups=100, group_size=gs,
                            seed=seed, vsnl_repeats=repeats)
    pred, base = negative_label_score(x, id_text, neg, 100.0, "neglabel", 100, seed=seed)
    expected = {
        "base": base,
        "ens": bank_score(x, id_text, ens, base, 100.0, gs, seed),
        "vsnl": bank_score(x, id_text, vsnl, base, 100.0, gs, seed),
        "ens_balanced": balanced_bank_score(x, id_text, ens, base, 100.0, 1, seed),
        "vsnl_balanced": balanced_bank_score(x, id_text, vsnl, base, 100.0, repeats, seed),
    }
    assert torch.equal(got.pred, pred)
    for name, want in expected.items():
        assert torch.allclose(getattr(got, name), want, rtol=0, atol=1e-6), name
    if n_ens and n_vsnl:  # different banks give different scores (the test is not vacuous)
        assert not torch.allclose(got.ens, got.vsnl, atol=1e-3)
    unbalanced = fused_ants_scores(x, id_text, neg, ens, vsnl, 100.0, 100, gs, seed, repeats, False)
    assert unbalanced.ens_balanced is None and unbalanced.vsnl_balanced is None
    assert torch.equal(unbalanced.ens, got.ens)


def test_fused_scores_reject_a_bank_of_another_model():
    x, id_text, neg = _unit(4, 32, 0), _unit(10, 32, 1), _unit(100, 32, 2)
    with pytest.raises(ValueError, match="feature dimension mismatch"):
        fused_ants_scores(x, id_text, neg, _unit(5, 16, 3), None)
