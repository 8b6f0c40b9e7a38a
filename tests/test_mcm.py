import math

import pytest
import torch
import torch.nn.functional as F

from openood_immuno import build_postprocessor
from openood_immuno.scores.mcm import mcm_score


def test_mcm_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    t = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    for T in (1.0, 0.5):
        pred, conf = mcm_score(v, t, T)
        for b in range(5):
            cos = [float(v[b] @ t[i]) for i in range(4)]
            den = sum(math.exp(c / T) for c in cos)
            probs = [math.exp(c / T) / den for c in cos]
            assert conf[b].item() == pytest.approx(max(probs), rel=1e-5)
            assert pred[b].item() == max(range(4), key=probs.__getitem__)


def test_mcm_rejects_dimension_mismatch_and_bad_temperature():
    with pytest.raises(ValueError, match="dimension mismatch"):
        mcm_score(torch.ones(2, 8), torch.ones(3, 4))
    with pytest.raises(ValueError, match="temperature"):
        mcm_score(torch.ones(2, 4), torch.ones(3, 4), 0.0)


def test_mcm_postprocessor_uses_net_text_and_sweeps(tiny_net):
    pp = build_postprocessor("mcm").fit(tiny_net, {})
    feats = tiny_net.class_text_features[:3]  # an image feature equal to a class prototype
    pred, conf = pp.score_features(feats)
    assert pred.tolist() == [0, 1, 2]
    assert pp.args_dict["T"] == [0.01, 0.1, 0.5, 1.0, 2.0]
    pp.set_hyperparam([0.1])
    assert pp.get_hyperparam() == [0.1]
    _, sharper = pp.score_features(feats)
    assert (sharper > conf).all()
