"""AdaNeg: gate, memory rule, proxies and score on hand-made tensors; order dependence; the
postprocessor's routes (per-batch OpenOOD ``postprocess`` vs cached features); runner by name on
the minibench (both protocols)."""
import math
import random
from types import SimpleNamespace

import pytest
import torch

from openood_immuno import build_postprocessor
from openood_immuno.data.benchmarks import BenchmarkLists
from openood_immuno.data.features import FeatureSet
from openood_immuno.experiments.runner import FeatureStore, evaluate
from openood_immuno.methods.adaneg import AdaNegParams, AdaNegScorer, FeatureMemory
from openood_immuno.core.params import ParamError
from openood_immuno.scores.adaneg import (adaneg_score, gate, sample_adaptive_logits, softmax_entropy,
                                          task_adaptive_proxies)

E1, E2, E3 = torch.eye(3)


def unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def lse(*v):
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))


def test_gate_and_entropy_by_hand():
    to_id, to_neg = gate(torch.tensor([0.9, 0.5, 0.1, 0.75, 0.25]), threshold=0.5, gap=0.5)
    assert to_id.tolist() == [True, False, False, False, False]     # > 0.75, strictly
    assert to_neg.tolist() == [False, False, True, False, False]    # < 0.25, strictly
    to_id, to_neg = gate(torch.tensor([0.65, 0.45]), threshold=0.6, gap=0.0)
    assert (to_id.tolist(), to_neg.tolist()) == ([True, False], [False, True])
    assert softmax_entropy(torch.zeros(1, 2)).item() == pytest.approx(math.log(2), abs=1e-6)
    assert softmax_entropy(torch.tensor([[0.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_memory_keeps_the_lowest_entropy_features_of_a_slot():
    memory = FeatureMemory(unit([1, 0, 0]), capacity=2)
    feats = unit([0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 1])
    for i, h in enumerate([0.5, 0.3, 0.4, 0.1, 0.9]):   # one at a time: append, append, replace 0.5, replace 0.4
        memory.write(torch.tensor([0]), feats[i:i + 1], torch.tensor([h]))
    assert sorted(memory.entropy[0].tolist()) == pytest.approx([0.1, 0.3])
    assert memory.offered == 5 and memory.counts().tolist() == [2]
    assert torch.allclose(memory.sums[0], feats[1] + feats[3])
    rows = memory.entries[0]
    assert torch.allclose(memory.gram[0], rows @ rows.T)
    once = FeatureMemory(unit([1, 0, 0]), capacity=2)   # the same offers in one batch
    once.write(torch.zeros(5, dtype=torch.long), feats, torch.tensor([0.5, 0.3, 0.4, 0.1, 0.9]))
    assert torch.equal(once.sums, memory.sums)


def _sequential_reference(offers, n_slots, capacity):
    """The authors' per-sample loop, written out: append until full, then replace the highest-
    entropy entry when strictly lower (among equal highest, the latest written goes)."""
    slots = [[] for _ in range(n_slots)]
    for ident, (slot, h) in enumerate(offers):
        held = slots[slot]
        if len(held) < capacity:
            held.append((h, ident))
        else:
            worst = max(held, key=lambda e: (e[0], e[1]))
            if h < worst[0]:
                held[held.index(worst)] = (h, ident)
    return [sorted(i for _, i in held) for held in slots]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_memory_equals_the_sequential_rule_with_ties_and_batches(seed):
    rng = random.Random(seed)
    n_slots, capacity, n = 5, 3, 80
    offers = [(rng.randrange(n_slots), rng.choice([0.1, 0.2, 0.3, 0.4])) for _ in range(n)]
    memory = FeatureMemory(torch.nn.functional.normalize(torch.randn(n_slots, 4), dim=-1), capacity)
    start = 0
    while start < n:   # batches of random sizes
        size = rng.randint(1, 17)
        chunk = offers[start:start + size]
        memory.write(torch.tensor([s for s, _ in chunk]), torch.randn(len(chunk), 4),
                     torch.tensor([h for _, h in chunk]))
        start += size
    expected = _sequential_reference(offers, n_slots, capacity)
    got = [sorted(a for a in memory.arrival[s].tolist() if a != torch.iinfo(torch.int64).max)
           for s in range(n_slots)]
    assert got == expected


def test_proxies_by_hand():
    p = task_adaptive_proxies(E1[None], E2[None])
    assert torch.allclose(p, unit([1, 1, 0]))
    memory = FeatureMemory(E1[None], capacity=2)
    memory.write(torch.tensor([0]), E2[None], torch.tensor([0.0]))
    for beta in (0.0, 1.0, 5.0):   # x = e1: cos = (1, 0, 0 for the empty entry), w = (1, e^-beta, .)
        a = sample_adaptive_logits(E1[None], memory.entries, memory.gram, beta, logit_scale=10.0)
        assert a.item() == pytest.approx(10 / math.sqrt(1 + math.exp(-2 * beta)), rel=1e-5)
    x = torch.nn.functional.normalize(torch.randn(7, 3), dim=-1)   # beta = 0 is the task-adaptive proxy
    a0 = sample_adaptive_logits(x, memory.entries, memory.gram, 0.0, logit_scale=10.0)
    assert torch.allclose(a0, 10 * x @ task_adaptive_proxies(memory.text, memory.sums).T, atol=1e-5)


def test_sample_adaptive_logits_equal_the_materialised_proxies():
    torch.manual_seed(0)
    entries = torch.nn.functional.normalize(torch.randn(6, 4, 8), dim=-1)
    entries[2, 3] = 0   # an empty entry
    gram = entries @ entries.transpose(1, 2)
    x = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    w = torch.exp(-3.0 * (1 - torch.einsum("bd,sed->bse", x, entries)))
    proxies = torch.nn.functional.normalize(torch.einsum("bse,sed->bsd", w, entries), dim=-1)
    expected = 100 * torch.einsum("bd,bsd->bs", x, proxies)
    assert torch.allclose(sample_adaptive_logits(x, entries, gram, 3.0, chunk=2), expected, atol=1e-4)


def _base(id_text, neg_text):
    return SimpleNamespace(id_text=id_text, neg_text=neg_text)


def test_score_by_hand_two_batches():
    """ID classes e1, e2; one negative e3; one group; logits 10 cos; memory of 2 (code: L = 3)."""
    params = AdaNegParams(n_groups=1, logit_scale=10.0, memory_length=3, sample_adaptive=False)
    scorer = AdaNegScorer(params).fit(_base(torch.stack([E1, E2]), E3[None]))
    x = unit([2, 0, 1])
    pred, conf = scorer.score(x)
    z = [10 * 2 / math.sqrt(5), 0.0, 10 / math.sqrt(5)]
    s_nl = sigmoid(lse(z[0], z[1]) - z[2])
    assert s_nl > 0.75   # cached in ID slot 0 before scoring: the batch sees its own feature
    p0 = [1 + 2 / math.sqrt(5), 0, 1 / math.sqrt(5)]
    norm0 = math.sqrt(sum(v * v for v in p0))
    a0 = 10 * (2 / math.sqrt(5) * p0[0] + 1 / math.sqrt(5) * p0[2]) / norm0
    s_ada = sigmoid(lse(a0, 0.0) - z[2])
    assert conf.item() == pytest.approx(s_ada + 0.1 * s_nl, rel=1e-5)
    assert pred.item() == 0
    assert scorer.status()["cached_id"] == 1 and scorer.status()["cached_neg"] == 0

    y = unit([0, 0.6, 0.8])   # S_nl = sigmoid(LSE(0, 6) - 8) < 0.25: cached in the negative slot
    pred, conf = scorer.score(y)
    s_nl = sigmoid(lse(0.0, 6.0) - 8.0)
    assert s_nl < 0.25
    a0 = 10 * (0.8 / math.sqrt(5)) / norm0                 # y . normalize(e1 + x)
    a2 = 10 * (0.6 * 0.6 + 0.8 * 1.8) / math.sqrt(0.36 + 1.8 ** 2)   # y . normalize(e3 + y)
    s_ada = sigmoid(lse(a0, 6.0) - a2)
    assert conf.item() == pytest.approx(s_ada + 0.1 * s_nl, rel=1e-5)
    assert pred.item() == 1
    assert scorer.status()["cached_neg"] == 1 and scorer.status()["batch"] == 2


def test_final_score_choices():
    a, n = torch.tensor([0.6]), torch.tensor([0.5])
    assert adaneg_score(a, n, 0.1).item() == pytest.approx(0.65)
    assert adaneg_score(a, n, 0.1, "adaonly").item() == pytest.approx(0.6)
    assert adaneg_score(a, n, 0.1, "vanillaonly").item() == pytest.approx(0.5)
    assert adaneg_score(a, n, 0.1, "multiply").item() == pytest.approx(0.3)
    with pytest.raises(ParamError, match="memory_length"):
        AdaNegParams(memory_length=1)
    assert AdaNegParams(memory_length=1, capacity_rule="full").capacity == 1
    assert AdaNegParams().capacity == 9


@pytest.mark.parametrize("sample_adaptive", [True, False])
def test_score_depends_on_stream_order_and_reset_restores_it(sample_adaptive):
    torch.manual_seed(0)
    d, c, m = 16, 4, 20
    base = _base(torch.nn.functional.normalize(torch.randn(c, d), dim=-1),
                 torch.nn.functional.normalize(torch.randn(m, d), dim=-1))
    scorer = AdaNegScorer(AdaNegParams(n_groups=2, logit_scale=10.0, sample_adaptive=sample_adaptive)).fit(base)
    a, b = (torch.nn.functional.normalize(torch.randn(16, d), dim=-1) for _ in range(2))
    first = scorer.score(a)[1]
    scorer.score(b)
    assert scorer.status()["cached_neg"] > 0
    later = scorer.score(a)[1]
    assert not torch.allclose(first, later)   # the memory b left changes a's scores
    scorer.reset()
    assert scorer.status()["samples"] == 0 and scorer.status()["memory_bytes"] == 0
    assert torch.equal(scorer.score(a)[1], first)


#: a 600-word corpus and 100 negatives: the tiny net encodes ~700 prompts
FAST = {"corpus_limit": 600, "n_neg_labels": 100}


def test_postprocess_per_batch_equals_cached_features(tiny_net):
    """OpenOOD's per-batch ``postprocess(net, data)`` after ``reset()`` gives the scores of the
    cached-feature route in the same batches and order."""
    pp = build_postprocessor("adaneg", **FAST).fit(tiny_net, {})
    images = torch.randn(24, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    pp.reset()
    routed = [pp.postprocess(tiny_net, images[i:i + 8]) for i in range(0, 24, 8)]
    feats = tiny_net.encode_image(images)
    pred, conf, _ = pp.score_feature_set(FeatureSet("x", feats.cpu(), torch.zeros(24, dtype=torch.long),
                                                    [""] * 24), batch_size=8)
    assert torch.cat([c for _, c in routed]).numpy() == pytest.approx(conf, abs=1e-6)
    assert torch.cat([p for p, _ in routed]).tolist() == pred.tolist()
    assert pp.status()["order"].startswith("memory reset before each scored list")
    assert pp.describe()["memory"] == {"order": pp.order(), "capacity": 9, "proxies": "sample-adaptive"}


def test_adaneg_runs_by_name_in_the_builtin_runner_both_protocols(tiny_net, minibench):
    """gap 0: every sample is cached (the random tiny net's S_nl stays inside the default gate);
    logits 1 x cos: at 100 x cos the tiny net's S_ada is 1.0 in float32 whatever the memory holds.
    Most of its time (~45 s alone) is the minibench's feature extraction, shared with every minibench
    test of a session (the session cache)."""
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    pp = build_postprocessor("adaneg", gap=0.0, logit_scale=1.0, **FAST)
    per_list = evaluate(pp, store)
    assert len(per_list.rows) == 7 and per_list.run_status.state == "random-weights"
    assert per_list.status["order"] == pp.order() and per_list.status["streams"] == 6   # ID + 5 OOD lists
    assert per_list.status["cached_id"] + per_list.status["cached_neg"] > 0
    stream = evaluate(pp, store, protocol="stream", seeds=[0])
    assert stream.scores["ssb_hard"][1].shape == (750,)   # 600 ID + 150 OOD in one stream
    carried = evaluate(build_postprocessor("adaneg", gap=0.0, logit_scale=1.0, reset_each_list=False,
                                           **FAST), store)
    assert carried.status["streams"] == 1 and "carried over" in carried.status["order"]
    assert (carried.scores["id"][1] == per_list.scores["id"][1]).all()   # the first list: same start
    assert not (carried.scores["ninco"][1] == per_list.scores["ninco"][1]).all()


@pytest.mark.parametrize("sample_adaptive", [True, False])
def test_a_closed_gate_gives_the_negative_label_score(sample_adaptive):
    """gap 1: the gate opens above 1 and below 0, nothing is cached, every proxy is its text
    feature: S_ada = S_nl and S = (1 + lambda) S_nl."""
    from openood_immuno.scores.grouped import negative_label_score

    torch.manual_seed(1)
    ids, negs = (torch.nn.functional.normalize(torch.randn(n, 8), dim=-1) for n in (3, 12))
    params = AdaNegParams(n_groups=3, gap=1.0, sample_adaptive=sample_adaptive)
    scorer = AdaNegScorer(params).fit(_base(ids, negs))
    x = torch.nn.functional.normalize(torch.randn(10, 8), dim=-1)
    pred, conf = scorer.score(x)
    nl_pred, s_nl = negative_label_score(x, ids, negs, 100.0, "neglabel", 3)
    assert torch.allclose(conf, 1.1 * s_nl, atol=1e-6) and torch.equal(pred, nl_pred)
    assert scorer.status()["cached_id"] + scorer.status()["cached_neg"] == 0
