"""OpenOOD's classic scores (scores/classic.py) on hand-made cases whose answer is known, the CLIP
net's classifier contract (get_fc, fc, forward_threshold), and the postprocessors by name."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openood_immuno.scores import classic as S

LN3 = math.log(3.0)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                          atol=tol, rtol=tol)


# ---- logit-only scores --------------------------------------------------------------------------
def test_msp_energy_maxlogit_gen_known_values():
    pred, conf = S.msp_score(t([[0.0, LN3]]))
    assert pred.tolist() == [1] and close(conf, [0.75])
    assert close(S.energy_score(t([[0.0, 0.0]]))[1], [math.log(2)])
    assert close(S.energy_score(t([[0.0, 0.0]]), temperature=2.0)[1], [2 * math.log(2)])
    pred, conf = S.max_logit_score(t([[1.0, 5.0, 2.0]]))
    assert pred.tolist() == [1] and close(conf, [5.0])
    assert close(S.gen_score(t([[0.0, 0.0]]), gamma=1.0, M=2)[1], [-0.5])     # -(2 * .5 * .5)
    assert close(S.gen_score(t([[0.0, 0.0]]), gamma=1.0, M=1)[1], [-0.25])    # only the largest
    with pytest.raises(ValueError, match="temperature must be > 0"):
        S.energy_score(t([[0.0]]), 0.0)


def test_gradnorm_closed_form():
    # p = [1/4, 3/4]: sum_c |2 p_c - 1| = 1; sum_j |f_j| = 3
    assert close(S.gradnorm_score(t([[0.0, LN3]]), t([[1.0, -2.0]]))[1], [3.0])
    assert close(S.gradnorm_score(t([[0.0, 0.0]]), t([[1.0, -2.0]]))[1], [0.0])   # uniform p: no gradient


def test_gradnorm_equals_backprop_through_the_head():
    torch.manual_seed(0)
    w, b, f = torch.randn(5, 4), torch.randn(5), torch.randn(3, 4)
    expected = []
    for row in f:
        fc = torch.nn.Linear(4, 5)
        fc.weight.data[...], fc.bias.data[...] = w, b
        loss = torch.sum(-torch.ones(1, 5) * torch.log_softmax(fc(row[None]), -1), -1).mean()
        loss.backward()
        expected.append(fc.weight.grad.abs().sum())
    assert close(S.gradnorm_score(S.linear_logits(f, w, b), f)[1], torch.stack(expected), 1e-4)


# ---- activation shaping ----------------------------------------------------------------------------
def test_react_threshold_and_clip():
    assert S.react_threshold(t([[0.0, 1.0], [2.0, 3.0]]), 50) == pytest.approx(1.5)
    pred, conf = S.react_score(t([[2.0, 0.5]]), torch.eye(2), torch.zeros(2), threshold=1.0)
    assert close(conf, [math.log(math.e + math.exp(0.5))])     # logits of the clipped [1, .5]
    with pytest.raises(ValueError, match=r"percentile must be in \[0, 100\]"):
        S.react_threshold(t([[0.0]]), 101)


def test_ash_b_and_scale_known_values():
    f = t([[1.0, 2.0, 3.0, 4.0]])
    assert S.ash_b(f, 50).tolist() == [[0.0, 0.0, 5.0, 5.0]]   # top 2 kept, each = sum / 2
    assert close(S.scale_features(f, 50), f * math.exp(10 / 7))    # s1 / s2 = 10 / (3 + 4)
    assert S.ash_b(t([[1.0, 2.0, 3.0, 4.0]]), 0).tolist() == [[2.5] * 4]   # nothing pruned: mean fill
    with pytest.raises(ValueError, match="keeps no coordinate"):
        S.ash_b(f, 100)


def test_dice_mask_known_values():
    w = t([[1.0, 1.0], [1.0, -1.0]])
    # contributions [[1, 2], [1, -2]]: the 50th percentile is 1, only the entry 2 is above it
    assert S.dice_weight(t([1.0, 2.0]), w, 50).tolist() == [[0.0, 1.0], [0.0, 0.0]]


# ---- distances -------------------------------------------------------------------------------------
def test_knn_kth_squared_distance():
    bank = t([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    logits = t([[0.0]])
    assert close(S.knn_score(t([[3.0, 0.0]]), bank, 1, logits)[1], [0.0], 1e-6)   # query normalised first
    assert close(S.knn_score(t([[1.0, 0.0]]), bank, 2, logits)[1], [-2.0])
    assert close(S.knn_score(t([[1.0, 0.0]]), bank, 3, logits, chunk=1)[1], [-4.0])   # chunked search
    with pytest.raises(ValueError, match="K=4 must be in"):
        S.knn_score(t([[1.0, 0.0]]), bank, 4, logits)


def test_knn_bank_is_a_seeded_share_of_the_train_features():
    train = torch.arange(20.0)[:, None].repeat(1, 2)
    assert S.knn_bank(train, 1.0) is train                                  # OpenOOD: every feature
    bank = S.knn_bank(train, 0.25, seed=3)
    assert bank.shape == (5, 2) and torch.equal(bank, S.knn_bank(train, 0.25, seed=3))
    assert bank[:, 0].tolist() == sorted(set(bank[:, 0].tolist()))          # distinct rows, list order
    assert not torch.equal(bank, S.knn_bank(train, 0.25, seed=4))
    with pytest.raises(ValueError, match="bank_ratio=0.01 keeps no feature of 20"):
        S.knn_bank(train, 0.01)


def test_vim_known_values():
    x = t([[1, 0, 0.1], [0, 1, -0.1], [-1, 0, 0.1], [0, -1, -0.1]])
    w, b = torch.eye(3), torch.zeros(3)
    u, ns, alpha = S.vim_fit(x, w, b, dim=2)
    assert np.allclose(u, 0) and np.allclose(np.abs(ns.ravel()), [0, 0, 1])   # the residual is e3
    # max logits 1, 1, .1, 0 (mean .525) over residual norms .1 each
    assert alpha == pytest.approx(0.525 / 0.1, rel=1e-5)
    _, conf = S.vim_score(t([[0, 0, 1]]), w, b, u, ns, alpha)
    assert close(conf, [math.log(2 + math.e) - 5.25], 1e-5)
    with pytest.raises(ValueError, match="ViM dim=3 must be in"):
        S.vim_fit(x, w, b, dim=3)


def test_mds_and_rmds_known_values():
    feats, labels = t([[-1.0], [1.0], [9.0], [11.0]]), torch.tensor([0, 0, 1, 1])
    w, b = t([[1.0], [-1.0]]), torch.zeros(2)
    mu, prec = S.mds_fit(feats, labels, 2)
    assert mu.ravel().tolist() == [0.0, 10.0] and close(prec, [[1.0]])
    q = t([[1.0]])
    assert close(S.mds_score(q, S.linear_logits(q, w, b), mu, prec)[1], [-1.0])
    stats = S.rmds_fit(feats, labels, 2)
    assert close(stats[2], [5.0]) and close(stats[3], [[1 / 26]])
    assert close(S.rmds_score(q, S.linear_logits(q, w, b), *stats)[1], [-1.0 + 16 / 26])
    with pytest.raises(ValueError, match="1 of 3 classes have no ID train feature"):
        S.mds_fit(feats, labels, 3)


def test_klm_known_values():
    templates = S.klm_fit(t([[LN3, 0.0]]), 2)    # p = [.75, .25] predicted 0; class 1 unseen: e_1
    assert close(templates, [[0.75, 0.25], [0.0, 1.0]])
    assert close(S.klm_score(t([[LN3, 0.0]]), templates)[1], [0.0], 1e-6)
    assert close(S.klm_score(t([[0.0, LN3]]), templates)[1], [-0.5 * LN3])   # KL to e_1 is inf


def test_she_known_values():
    feats, labels = t([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]]), torch.tensor([0, 0, 1, 1])
    logits = S.linear_logits(feats, torch.eye(2), torch.zeros(2))   # the last is misclassified (tie -> 0)
    patterns = S.she_fit(feats, labels, logits, 2)
    assert patterns.tolist() == [[2.0, 0.0], [0.0, 2.0]]
    q = t([[1.0, 3.0]])
    ql = S.linear_logits(q, torch.eye(2), torch.zeros(2))
    assert close(S.she_score(q, ql, patterns)[1], [6.0])
    assert close(S.she_score(q, ql, patterns, "euclidean")[1], [-math.sqrt(2.0)])
    assert close(S.she_score(q, ql, patterns, "cosine")[1], [3 / math.sqrt(10)])


def test_fdbd_and_nci_known_values():
    w, f = torch.eye(2), t([[2.0, 1.0]])
    logits = S.linear_logits(f, w, torch.zeros(2))
    den = S.fdbd_denominators(w)
    assert close(den, [[1.0, math.sqrt(2)], [math.sqrt(2), 1.0]])
    assert close(S.fdbd_score(f, logits, den, None)[1], [1 / math.sqrt(2) / math.sqrt(5)])
    assert close(S.fdbd_score(f, logits, den, t([2.0, 0.0]))[1], [1 / math.sqrt(2)])
    assert close(S.nci_score(f, logits, w, t([0.0, 1.0]), alpha=0.5)[1], [1.0 + 0.5 * 3])


# ---- the CLIP net's classifier contract -----------------------------------------------------------
def test_clip_net_head_is_exact_and_react_clips_the_embedding(tiny_net):
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    logits, feats = tiny_net(x, return_feature=True)
    w, b = tiny_net.get_fc()
    assert w.shape == (1000, tiny_net.embed_dim) and b.shape == (1000,) and not b.any()
    assert np.allclose(w, (tiny_net.logit_scale * tiny_net.class_text_features).numpy())
    assert torch.equal(logits, feats @ torch.from_numpy(w).T + torch.from_numpy(b))   # bit for bit
    assert torch.equal(tiny_net.get_fc_layer()(feats), logits) and torch.equal(tiny_net.fc(feats), logits)
    assert torch.allclose(feats.norm(dim=1), torch.ones(3))         # the feature is the unit embedding
    assert torch.equal(tiny_net.forward_threshold(x, 10.0), logits)   # nothing above 10 in a unit vector
    clipped = tiny_net.forward_threshold(x, 0.05)
    assert torch.allclose(clipped, tiny_net.fc(feats.clip(max=0.05)), atol=1e-5)
    with pytest.raises(NotImplementedError, match="one feature layer"):
        tiny_net(x, return_feature_list=True)


def test_clip_net_forward_is_differentiable_for_odin(tiny_net):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1), requires_grad=True)
    tiny_net(x).max(dim=1).values.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not tiny_net.encode_image(x.detach()).requires_grad


def test_clip_net_head_follows_the_adapter_hook(tiny_net):
    protos = torch.nn.functional.normalize(torch.randn(1000, tiny_net.embed_dim), dim=-1)
    with tiny_net.adapted(None, protos, owner="test"):
        w, _ = tiny_net.get_fc()
        assert np.allclose(w, (tiny_net.logit_scale * protos).numpy())
    assert np.allclose(tiny_net.get_fc()[0], (tiny_net.logit_scale * tiny_net.class_text_features).numpy())


# ---- the postprocessors by name -------------------------------------------------------------------
def test_classic_names_are_builtin_runner_only_in_openood_tables():
    from openood_immuno.methods.classic import CLASSIC
    from openood_immuno.openood.registry import registrable_postprocessors

    assert not set(CLASSIC) & set(registrable_postprocessors())
    assert {"mcm", "neglabel", "ants", "immuno"} <= set(registrable_postprocessors())


def test_classic_postprocessors_score_cached_features_like_the_net(tiny_net):
    """Every name, fitted on ID features, scores a feature set; msp/ebo/mls equal the net's
    own logits' formulas (no backbone pass)."""
    from openood_immuno import build_postprocessor
    from openood_immuno.data.features import FeatureSet
    from openood_immuno.methods.classic import CLASSIC

    g = torch.Generator().manual_seed(2)

    def fs(n, name, labels=None):
        f = torch.nn.functional.normalize(torch.randn(n, tiny_net.embed_dim, generator=g), dim=-1)
        return FeatureSet(name, f, torch.arange(n) % 1000 if labels is None else labels, [""] * n)

    ids = {"train": fs(2000, "train"), "val": fs(200, "val")}
    test = fs(40, "test")
    logits = tiny_net.classify_features(test.features)[0]
    for name in CLASSIC:
        pp = build_postprocessor(name, **({"dim": 32} if name == "vim" else {}))
        if name == "she":     # a random net gets almost no class right: refused with the reason
            with pytest.raises(ValueError, match="no correctly classified ID train feature"):
                pp.fit(tiny_net, ids)
            continue
        pred, conf, _ = pp.fit(tiny_net, ids).score_feature_set(test)
        assert conf.shape == (40,) and np.isfinite(conf).all(), name
        if name not in ("react", "ash", "scale", "dice"):   # those predict from their shaped logits
            assert (pred == logits.argmax(1).numpy()).all(), name
        if name in ("msp", "ebo", "mls"):
            expected = {"msp": torch.softmax(logits, 1).max(1).values, "ebo": torch.logsumexp(logits, 1),
                        "mls": logits.max(1).values}[name]
            assert np.allclose(conf, expected.numpy(), atol=1e-5), name
    with pytest.raises(KeyError, match="needs the ID train features"):
        build_postprocessor("knn").fit(tiny_net, {"val": ids["val"]})
