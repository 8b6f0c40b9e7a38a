"""ANTS exactly as the authors' code (VSNL bank order, float32 eps in the lambda guard) and the
paper's readings as options (Eq. 5-6 threshold, Eq. 8 / 13 as one softmax), each against a
hand-computed value."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from openood_immuno import build_postprocessor
from openood_immuno.methods.ants import ANTSParams, NegativeImageMiner, VSNLBank, adaptive_lambda
from openood_immuno.methods.ants.adaptive import LAMBDA_EPS
from openood_immuno.methods.ants.ens import dedupe
from openood_immuno.methods.ants.mining import histogram_jump_threshold, paper_threshold
from openood_immuno.core.params import ParamError
from openood_immuno.scores.ants import bank_score, fused_ants_scores
from openood_immuno.scores.grouped import group_layout, _permutation

from test_ants_stream import BATCH, SMALL, run, stream  # noqa: F401  (stream: a fixture)


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _make(net, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ANTS is using the 'scripted' MLLM")
        return build_postprocessor("ants", **{"mllm": "scripted", **SMALL, **kw}).fit(net, {})


# ---- VSNL bank order -------------------------------------------------------------------------
def _code_cache_order(actives):
    """The ANTS code's class -> names dict after each update: new classes inserted, the ones
    that left deleted (an independent restatement of its insertion order)."""
    cache = {}
    for active in actives:
        for c in active:
            if c not in cache:
                cache[c] = True
        for c in list(cache):
            if c not in active:
                del cache[c]
    return list(cache)


def test_vsnl_bank_keeps_the_code_cache_insertion_order_and_it_changes_the_groups():
    names = {c: [f"class{c} name{k}" for k in range(5)] for c in range(6)}
    bank = VSNLBank()
    bank.update([0, 1, 2], {c: names[c] for c in (0, 1, 2)})
    second = [3, 0, 4, 2]                     # most frequent first: 3 overtook 0; 1 left
    labels = bank.update(second, {c: names[c] for c in bank.missing(second)})
    assert bank.active == [0, 2, 3, 4] == _code_cache_order([[0, 1, 2], second])
    assert labels == [n for c in (0, 2, 3, 4) for n in names[c]]
    by_frequency = [n for c in second for n in names[c]]
    assert labels != by_frequency and sorted(labels) == sorted(by_frequency)

    # 20 names in groups of 6: K = 3, the last 2 dropped, then the fixed permutation. The two
    # orders put different names into the groups (and drop different ones), so S_vsnl moves.
    k, kept = group_layout(20, "ants", group_size=6)
    assert (k, kept) == (3, 18)
    perm = _permutation(kept, 0)

    def groups(order):
        return [set(order[i] for i in perm[g * 6:(g + 1) * 6].tolist()) for g in range(k)]

    assert groups(labels) != groups(by_frequency)
    assert set(labels[18:]) == set(names[4][3:]) and set(by_frequency[18:]) == set(names[2][3:])
    feats = {n: f for n, f in zip(sorted(labels), _unit(20, 16, 7))}
    x, id_text, base = _unit(32, 16, 1), _unit(8, 16, 2), torch.zeros(32)
    ours = bank_score(x, id_text, torch.stack([feats[n] for n in labels]), base, 10.0, 6)
    other = bank_score(x, id_text, torch.stack([feats[n] for n in by_frequency]), base, 10.0, 6)
    assert (ours - other).abs().max() > 1e-3


def test_vsnl_bank_appends_a_class_that_returns():
    bank = VSNLBank()
    bank.update([5, 6], {5: ["a"], 6: ["b"]})
    bank.update([6], {})
    assert bank.update([5, 6], {}) == ["b", "a"]          # 5 re-enters at the end, as in the code
    assert bank.active == [6, 5] == _code_cache_order([[5, 6], [6], [5, 6]])


def test_vsnl_order_on_a_stream_is_the_code_cache_order(tiny_net):
    """A stream whose most frequent classes change between VSNL updates: the scorer's bank is the
    code's insertion order (the unit test above shows the values it changes)."""
    pp = _make(tiny_net, mode="near_only", vsnl_top_k=3, group_size=4, vsnl_start_batch=2,
               vsnl_interval=2)
    on = pp.scorer
    id_text = on.base.id_text
    plan = [[10] * 4 + [20] * 3 + [30]] * 2 + [[40] * 8] * 2 + [[50] * 8] * 2
    actives, differs = [], 0
    original = on._vsnl_classes

    def record():
        actives.append(original())
        return actives[-1]

    on._vsnl_classes = record
    for b, classes in enumerate(plan):
        noise = 0.01 * _unit(len(classes), id_text.shape[1], 100 + b)
        feats = F.normalize(id_text[classes] + noise, dim=-1)
        pred, conf = pp.score_features(feats)
        assert pred.tolist() == classes                  # the stream is what the plan says
        if b % 2 == 1:                                   # a VSNL update ran at this batch
            want = dedupe(n for c in _code_cache_order(actives) for n in on.vsnl.names_by_class[c])
            assert on.vsnl.labels == want
            encoded = tiny_net.encode_text(want, ("the nice {}",))
            assert torch.allclose(on.vsnl.features, encoded)
            assert torch.allclose(conf, bank_score(feats, id_text, encoded, conf, 100.0, 4), atol=1e-6)
            freq = dedupe(n for c in actives[-1] for n in on.vsnl.names_by_class[c])
            differs += freq != want
    assert actives == [[10, 20, 30], [40, 10, 20], [40, 50, 10]]
    assert differs == 2


# ---- lambda guard ----------------------------------------------------------------------------
def test_lambda_guard_is_float32_eps_as_in_the_code():
    assert LAMBDA_EPS == torch.finfo(torch.float32).eps
    # (1 - a) + (1 - b) = 5e-8: below float32 eps (the code returns 0.5), above the old 1e-12
    assert adaptive_lambda(1 - 3e-8, 1 - 2e-8) == 0.5
    ua, ub = 3e-7, 2e-7                                      # above eps: the formula
    assert adaptive_lambda(1 - ua, 1 - ub) == pytest.approx(0.6, rel=1e-6)
    assert adaptive_lambda(0.2, 0.6) == pytest.approx(0.8 / 1.2)


# ---- the paper's threshold rule, Eq. 5-6 ----------------------------------------------------
def test_paper_threshold_is_the_largest_of_the_eta_lowest_candidates():
    scores = [0.95, 0.05, 0.7, 0.3, 0.9, 0.1, 0.85, 0.5, 0.2]
    # Eq. 5: candidates below gamma = 0.8 -> [0.05, 0.1, 0.2, 0.3, 0.5, 0.7] (6 of them)
    assert paper_threshold(scores, 0.8, 0.5) == (pytest.approx(0.2), 0.8)      # k = 3
    assert paper_threshold(scores, 0.8, 0.3)[0] == pytest.approx(0.1)          # k = ceil(1.8) = 2
    assert paper_threshold(scores, 0.8, 1.0)[0] == pytest.approx(0.7)          # all candidates
    assert paper_threshold(scores, 0.8, 0.01)[0] == pytest.approx(0.05)        # at least one
    ten = [i / 20 for i in range(10)]                        # 0.3 * 10 = 3.0000000000000004
    assert paper_threshold(ten, 0.8, 0.3)[0] == pytest.approx(0.1)             # k = 3, not 4
    assert histogram_jump_threshold(scores, 0.5)[0] != pytest.approx(0.2)       # another rule
    with pytest.raises(ValueError, match="no score below gamma"):
        paper_threshold([0.9, 0.95], 0.8, 0.5)


def test_miner_with_the_paper_rule_uses_every_score_below_the_initial_threshold():
    miner = NegativeImageMiner(ANTSParams(init_threshold=0.8, eta=0.5, hist_bins=10, mine_min_cache=2,
                                          ens_max_updates=5, threshold_rule="paper"))
    gen = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(3):
        s = torch.rand(8, generator=gen)
        seen.append(s)
        miner.observe(s, torch.zeros(8, dtype=torch.long), [f"img{i}" for i in range(8)])
        if miner.ready():
            miner.take()
            below = torch.cat(seen)[torch.cat(seen) < 0.8].sort().values   # gamma stays 0.8
            assert miner.threshold == pytest.approx(float(below[math.ceil(0.5 * len(below)) - 1]))
            assert miner.upper == 0.8
    assert miner.updates >= 2
    with pytest.raises(ParamError, match="eta must be in \\(0, 1\\] with threshold_rule: paper"):
        ANTSParams(threshold_rule="paper", eta=0.0)


def test_threshold_rule_paper_drives_the_stream(tiny_net, stream):
    pp = _make(tiny_net, threshold_rule="paper")
    miner, taken = pp.scorer.miner, []
    original = miner.take

    def take():
        items = original()
        taken.append(((miner.threshold, miner.upper), torch.cat(miner.history)))
        return items

    miner.take = take
    run(pp, stream)
    assert taken and miner.updates == len(taken)
    for got, history in taken:
        assert got == paper_threshold(history, 0.9, 0.5)
    assert pp.status()["threshold"] == taken[-1][0][0]


# ---- the paper's Eq. 8 / 13: one softmax over [ID ; bank] -------------------------------------
def _eq8(x, id_text, bank, scale):
    """sum_ID e^{cos/tau} / (sum_ID e^{cos/tau} + sum_bank e^{cos/tau}), in float64."""
    pos = (scale * x.double() @ id_text.double().T).exp().sum(1)
    neg = (scale * x.double() @ bank.double().T).exp().sum(1)
    return (pos / (pos + neg)).float()


def test_paper_ungrouped_scores_are_eq_8_and_13():
    x, id_text, neg = _unit(16, 32, 0), _unit(20, 32, 1), _unit(300, 32, 2)
    ens, vsnl = _unit(250, 32, 3), _unit(45, 32, 4)
    paper = fused_ants_scores(x, id_text, neg, ens, vsnl, 10.0, 30, 20, 0, 10, ungrouped=True)
    code = fused_ants_scores(x, id_text, neg, ens, vsnl, 10.0, 30, 20, 0, 10)
    assert torch.allclose(paper.ens, _eq8(x, id_text, ens, 10.0), atol=1e-6)
    assert torch.allclose(paper.vsnl, _eq8(x, id_text, vsnl, 10.0), atol=1e-6)
    assert (paper.ens - code.ens).abs().max() > 1e-3           # grouping really differs
    for name in ("pred", "base", "ens_balanced", "vsnl_balanced"):   # the rest is unchanged
        assert torch.equal(getattr(paper, name), getattr(code, name)), name
    empty = fused_ants_scores(x, id_text, neg, None, None, 10.0, 30, 20, ungrouped=True)
    assert torch.equal(empty.ens, empty.base) and torch.equal(empty.vsnl, empty.base)


def test_paper_ungrouped_on_a_stream(tiny_net, stream):
    feats, paths = stream
    pps = {g: _make(tiny_net, mode="far_only", group_size=4, score_grouping=g)
           for g in ("code", "paper_ungrouped")}
    differs = False
    for i in range(0, len(paths), BATCH):
        f, p = feats[i:i + BATCH], paths[i:i + BATCH]
        confs = {g: pp.score_features(f, p)[1] for g, pp in pps.items()}
        on = pps["paper_ungrouped"].scorer
        if len(on.ens):
            assert torch.allclose(confs["paper_ungrouped"], _eq8(f, on.base.id_text, on.ens.features, 100.0),
                                  atol=1e-6)
            differs |= not torch.allclose(confs["code"], confs["paper_ungrouped"], atol=1e-4)
    assert len(on.ens) >= 8 and differs       # >= 2 groups of 4: grouping matters
