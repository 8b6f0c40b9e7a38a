"""CSP: conjugation, selection rule, score on hand-made tensors, postprocessor, runner by name."""
import hashlib
import random

import pytest
import torch

from openood_immuno import build_postprocessor
from openood_immuno.data.benchmarks import BenchmarkLists
from openood_immuno.experiments.runner import FeatureStore, evaluate
from openood_immuno.methods.csp import (CSP_EXCLUDED_LEXNAMES, SUPERCLASS_TEMPLATES, conjugate,
                                        csp_distances, csp_pool, kept_count, mine_csp_labels)
from openood_immuno.methods.neglabel import export_labels, wordnet_corpus
from openood_immuno.scores.csp import csp_score


class FakeNet:
    """encode_text: a fixed random unit vector per (templates, text)."""

    identity = "fake"

    def __init__(self, class_names, dim=16):
        self.class_names, self.dim = list(class_names), dim

    def encode_text(self, texts, templates=None):
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(
            int(hashlib.sha256((repr(tuple(templates)) + t).encode()).hexdigest()[:8], 16))) for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def test_conjugate_draws_one_superclass_per_adjective_with_pythons_random():
    assert conjugate(["red", "odd"], ("{} scene",)) == ["red scene", "odd scene"]
    adjectives = [f"a{i}" for i in range(50)]
    random.seed(3)          # the authors' draw: random.seed(seed), then random.choice per adjective
    expected = [random.choice(SUPERCLASS_TEMPLATES).format(a) for a in adjectives]
    assert conjugate(adjectives, SUPERCLASS_TEMPLATES, seed=3) == expected
    with pytest.raises(ValueError, match="superclass"):
        conjugate(["red"], ())


def test_pool_drops_the_csp_lexnames_and_conjugates_every_adjective():
    nouns, phrases = csp_pool()
    neg_nouns, neg_adjectives = wordnet_corpus()
    assert (len(nouns), len(phrases)) == (47_519, 10_234)
    assert len(nouns) < len(neg_nouns) and len(phrases) < len(neg_adjectives)
    supers = {t.format("").strip() for t in SUPERCLASS_TEMPLATES}
    assert all(p.rsplit(" ", 1)[1] in supers for p in phrases)
    assert set(CSP_EXCLUDED_LEXNAMES) >= {"noun.person", "noun.quantity", "noun.group", "adj.pert"}
    small_n, small_p = csp_pool(corpus_limit=500)
    assert len(small_n) + len(small_p) == 500 and set(small_p) <= set(phrases)


def test_distance_is_the_quantile_and_near_synonyms_get_one():
    ids = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    s = 2 ** -0.5
    cand = torch.tensor([[1.0, 0.0],        # cos (1, 0, -1): max 1 > 0.95 -> d = 1
                         [s, s],            # cos (s, s, -s): quantile 0.5 = s
                         [0.0, -1.0]])      # cos (0, -1, 0): quantile 0.5 = 0
    d = csp_distances(cand, ids, quantile=0.5, duplicate_cos=0.95)
    assert d.tolist() == pytest.approx([1.0, s, 0.0])
    # without the near-synonym rule, candidate 0 has quantile 0.5 of (1, 0, -1) = 0
    assert csp_distances(cand, ids, 0.5, duplicate_cos=1.0)[0].item() == pytest.approx(0.0)
    # quantile 1.0 of (s, s, -s) = s; 0.0 = -s
    assert csp_distances(cand[1:2], ids, 0.0, 1.0).item() == pytest.approx(-s)


def test_kept_count_is_the_floor_of_each_pools_share():
    assert (kept_count(47_519, 0.15), kept_count(10_234, 0.15)) == (7127, 1535)
    assert kept_count(6, 0.15) == 0


def test_mining_keeps_the_lowest_share_of_each_pool():
    net = FakeNet([f"class{i}" for i in range(30)])
    nouns, phrases = [f"noun{i}" for i in range(200)], [f"adj{i} scene" for i in range(40)]
    t_id, t_n, t_a = ("the nice {}",), ("the {}", "{}"), ("{}",)
    labels = mine_csp_labels(net, nouns, phrases, 0.1, 0.95, 0.95, t_id, t_n, t_a)
    assert (len(labels.nouns), len(labels.adjectives)) == (20, 4)
    ids = net.encode_text(net.class_names, t_id)
    for words, t, got in ((nouns, t_n, labels.nouns), (phrases, t_a, labels.adjectives)):
        d = csp_distances(net.encode_text(words, t), ids)
        assert got == [words[i] for i in torch.sort(d, stable=True).indices[:len(got)].tolist()]
    with pytest.raises(ValueError, match="neg_ratio"):
        mine_csp_labels(net, nouns[:5], phrases[:5], 0.1, 0.95, 0.95, t_id, t_n, t_a)


def test_score_is_the_id_softmax_mass_per_group():
    ids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    negs = torch.tensor([[-1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pred, score = csp_score(v, ids, negs, logit_scale=2.0, n_groups=1)
    z = 2.0 * v @ torch.cat([ids, negs]).T           # one group: softmax over all 5 columns
    assert pred.tolist() == [0, 1]
    assert score.tolist() == pytest.approx(torch.softmax(z, 1)[:, :2].sum(1).tolist())
    # three groups of one: mean of the three 3-way softmaxes (the permutation only reorders groups)
    _, score3 = csp_score(v, ids, negs, logit_scale=2.0, n_groups=3)
    by_hand = torch.stack([torch.softmax(torch.cat([z[:, :2], z[:, 2 + j:3 + j]], 1), 1)[:, :2].sum(1)
                           for j in range(3)]).mean(0)
    assert score3.tolist() == pytest.approx(by_hand.tolist())


#: one prompt per text and a 600-word corpus: the tiny net encodes ~1.6k prompts, not ~13k
FAST = {"corpus_limit": 600, "n_groups": 8, "id_templates": ["the nice {}"],
        "noun_templates": ["the nice {}"], "adj_templates": ["{}"]}


def test_csp_postprocessor_and_label_file(tiny_net, tmp_path):
    pp = build_postprocessor("csp", **FAST).fit(tiny_net, {})
    n_nouns, n_phrases = (len(x) for x in csp_pool(corpus_limit=600))
    assert (len(pp.scorer.labels.nouns), len(pp.scorer.labels.adjectives)) == (
        int(n_nouns * 0.15), int(n_phrases * 0.15))
    feats = tiny_net.encode_image(torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    pred, conf = pp.score_features(feats)
    assert pred.shape == (4,) and bool(((conf > 0) & (conf < 1)).all())
    path = export_labels(pp.scorer.labels, tmp_path / "csp.txt")
    imported = build_postprocessor("csp", **{**FAST, "neg_labels_file": str(path)}).fit(tiny_net, {})
    assert torch.equal(imported.score_features(feats)[1], conf)


def test_csp_runs_by_name_in_the_builtin_runner(tiny_net, minibench):
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    result = evaluate(build_postprocessor("csp", **FAST), store)
    assert len(result.rows) == 7 and result.run_status.state == "random-weights"   # the tiny net: marked, not degraded
