"""NegRefine: the score on hand-made tensors, the authors' clean-up, questions and parsing, the
filter through a fake OpenAI-compatible LLM (and its cache), a filtered labels file, degraded
without an LLM, and a run by name in the builtin runner."""
import math

import pytest
import torch

from fake_endpoint import FakeChat, base_url, dead_port, serving
from openood_immuno import build_postprocessor
from openood_immuno.data.benchmarks import BenchmarkLists
from openood_immuno.experiments.runner import FeatureStore, evaluate
from openood_immuno.llm.errors import BackendUnavailable, RequestFailed
from openood_immuno.methods.csp import CSPParams, csp_labels
from openood_immuno.methods.negrefine import NegRefineParams, clean_words, is_yes, question, refine
from openood_immuno.methods.neglabel import export_labels
from openood_immuno.methods.neglabel.mining import NegativeLabels
from openood_immuno.scores.negrefine import multi_matching_score, negrefine_score, top_matches


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


# ---- the score --------------------------------------------------------------------------------------
IDS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
NEGS = torch.tensor([[-1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
V = torch.tensor([[1.0, 0.0]])


def test_top_matches_are_each_images_largest_logits():
    pos_idx, neg_idx, u = top_matches(V, IDS, NEGS, 2.0, k_pos=5, k_neg=2)
    assert pos_idx.tolist() == [[0, 1]]                    # k_pos capped at C = 2, as the authors'
    assert neg_idx.tolist() == [[2, 1]] and u[0].tolist() == pytest.approx([1.6, 1.2])
    with pytest.raises(ValueError, match="k_neg"):
        top_matches(V, IDS, NEGS, 2.0, 1, 4)


def test_score_is_neglabels_plus_w_times_the_best_pair_against_its_negative():
    s = 2.0
    # one class x one negative: the pair "class0 and neg2" has cos 0.6 with the image
    pair = torch.tensor([0.6, 0.8]).reshape(1, 1, 1, 2)
    pred, score = negrefine_score(V, IDS, NEGS, pair, logit_scale=s, n_groups=1, k_pos=1, k_neg=1,
                                  weight=2.0)
    e = math.exp
    # NegLabel, one group: ID mass of softmax over z = (2, 0 | -2, 1.2, 1.6)
    s_nl = (e(2) + e(0)) / (e(2) + e(0) + e(-2) + e(1.2) + e(1.6))
    s_mm = e(1.2) / (e(1.2) + e(1.6))                       # exp(m) / (exp(m) + exp(u)), m = 2 x 0.6
    assert pred.tolist() == [0] and score.item() == pytest.approx(s_nl + 2 * s_mm)
    # 2 classes x 2 negatives (neg 2, then neg 1): each pair compared with ITS negative's logit
    pairs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],         # class 0 and neg 2 (m = 2), neg 1 (m = 0)
                          [[0.0, 1.0], [0.8, 0.6]]]).reshape(1, 2, 2, 2)   # class 1: m = 0, m = 1.6
    u = torch.tensor([[1.6, 1.2]])
    by_hand = max(_sigmoid(2 - 1.6), _sigmoid(0 - 1.2), _sigmoid(0 - 1.6), _sigmoid(1.6 - 1.2))
    assert multi_matching_score(V, pairs, u, s).item() == pytest.approx(by_hand)     # = sigmoid(0.4)
    _, score2 = negrefine_score(V, IDS, NEGS, pairs, s, n_groups=1, k_pos=2, k_neg=2, weight=0.5)
    assert score2.item() == pytest.approx(s_nl + 0.5 * by_hand)
    with pytest.raises(ValueError, match="pair_text"):
        multi_matching_score(V, pairs[:, :, :1], u, s)


# ---- the filter -------------------------------------------------------------------------------------
def test_clean_up_is_the_authors():
    words = ["o'clock", "ab", "New York", "x1y2z", "New York", "well-being", "a_b"]
    assert clean_words(words) == ["oclock", "New York", "xyz", "well-being", "a_b"]


def test_questions_and_parsing_are_the_authors():
    assert question("proper_noun", "paris") == (
        "You are a helpful assistant. Answering only Yes/No.\n\nIs 'paris' a proper noun, like the "
        "name of a city, country, mountain, river, or any unique place or entity?")
    assert question("subcategory", "husky", "dog").endswith("Is 'husky' a subcatgeory of 'dog'?")
    assert is_yes("Yes.") and is_yes("yes, it is") and is_yes(" YES")
    assert not is_yes("No") and not is_yes("I think yes")


class ScriptedChat:
    """Answers from ``proper`` (negatives that are proper nouns) and ``sub`` ((neg, class) pairs)."""

    def __init__(self, proper=(), sub=(), fail=(), give_up_at=None):
        self.proper, self.sub, self.fail, self.give_up_at = set(proper), set(sub), set(fail), give_up_at
        self.asked = []

    def complete(self, prompt, seed):
        self.asked.append(prompt.split("\n\n", 1)[1])
        if self.give_up_at is not None and len(self.asked) > self.give_up_at:
            raise BackendUnavailable("endpoint gone")
        neg = prompt.split("'")[1]
        if neg in self.fail:
            raise RequestFailed("timeout")
        if "proper noun" in prompt:
            return "Yes." if neg in self.proper else "No."
        return "Yes" if (neg, prompt.split("'")[3]) in self.sub else "No"


def test_refine_asks_proper_noun_then_each_match_and_stops_at_the_first_yes():
    matches = {"paris": ["dog", "cat"], "husky": ["cat", "dog", "fox"], "cat": ["cat", "dog"],
               "rock": ["dog", "cat"], "lively scene": ["dog", "cat"]}
    llm = ScriptedChat(proper={"paris"}, sub={("husky", "dog")})
    run = refine(llm, ["paris", "husky", "cat", "rock"], ["lively scene"], matches)
    assert run.labels.nouns == ["rock"] and run.labels.adjectives == ["lively scene"]
    assert run.removed == {"proper_noun": 1, "same": 1, "subcategory": 1} and run.problem is None
    assert [q.split("'")[1] + ("/" + q.split("'")[3] if "subcat" in q else "") for q in llm.asked] == [
        "paris",                                   # proper noun: removed, no subcategory question
        "husky", "husky/cat", "husky/dog",         # stops at the first yes (fox not asked)
        "cat",                                     # equal to its first match: removed unasked
        "rock", "rock/dog", "rock/cat", "lively scene", "lively scene/dog", "lively scene/cat"]
    assert run.requests == 11


def test_refine_keeps_failed_and_unasked_negatives_and_says_so():
    matches = {w: ["dog"] for w in ("a1", "b1", "c1")}
    run = refine(ScriptedChat(fail={"a1"}), ["a1", "b1"], [], matches)
    assert run.labels.nouns == ["a1", "b1"] and "2 of 4 LLM requests failed" in run.problem   # both of a1's
    gone = refine(ScriptedChat(proper={"a1", "b1", "c1"}, give_up_at=1), ["a1", "b1", "c1"], [], matches)
    assert gone.labels.nouns == ["b1", "c1"] and "given up" in gone.problem


# ---- through the postprocessor ----------------------------------------------------------------------
#: one prompt per text, a 300-word corpus, 2 matches per negative: ~45 negatives, ~140 questions
FAST = {"corpus_limit": 300, "n_groups": 4, "top_matches": 2, "id_templates": ["the nice {}"],
        "noun_templates": ["the nice {}"], "adj_templates": ["{}"]}


class YesNoHandler(FakeChat):
    """Proper noun: "Yes" for negatives starting with a-f; subcategory: "yes" for g-m; else "No"."""

    def answer(self, payload) -> str:
        prompt = payload["messages"][0]["content"]
        first = prompt.split("'")[1][:1].lower()
        yes = first in "abcdef" if "proper noun" in prompt else first in "ghijklm"
        return "Yes." if yes else "No, it is not."


def _initial(tiny_net):
    initial = csp_labels(tiny_net, NegRefineParams(**FAST))
    return clean_words(initial.nouns), clean_words(initial.adjectives)


def test_initial_negatives_are_csps_mining_with_the_max_rule():
    p = NegRefineParams(**FAST)
    csp = CSPParams(neg_ratio=0.15, quantile=1.0, corpus_limit=300, id_templates=["the nice {}"],
                    noun_templates=["the nice {}"], adj_templates=["{}"])
    assert isinstance(p, CSPParams) and NegRefineParams().quantile == 1.0   # the authors' max rule
    assert {n: p.get(n) for n in CSPParams.BANK} == {n: csp.get(n) for n in CSPParams.BANK}   # the mining fields


def test_fake_llm_filters_the_negatives_and_the_run_is_cached(tiny_net):
    nouns, adjectives = _initial(tiny_net)
    with serving(YesNoHandler, mode="ok") as srv:
        spec = f"openai:fake-llm@{base_url(srv)}"
        pp = build_postprocessor("negrefine", llm=spec, **FAST).fit(tiny_net, {})
        proper = [w for w in nouns + adjectives if w[0].lower() in "abcdef"]
        sub = [w for w in nouns + adjectives if w[0].lower() in "ghijklm"]
        assert pp.scorer.labels.nouns == [w for w in nouns if w not in proper + sub]
        assert pp.scorer.labels.adjectives == [w for w in adjectives if w not in proper + sub]
        status = pp.status()
        assert status["degraded"] is False and status["removed"]["proper_noun"] == len(proper)
        assert status["removed"]["subcategory"] == len(sub)
        # a kept negative is asked once + once per match; a removed one stops at its first yes
        kept = len(pp.scorer.labels)
        assert len(srv.requests) == len(proper) + 2 * len(sub) + 3 * kept - status["removed"]["same"]
        assert srv.requests[0]["temperature"] == 0.0 and status["llm_cost"]["requests"] == len(srv.requests)
        asked = len(srv.requests)
        again = build_postprocessor("negrefine", llm=spec, **FAST).fit(tiny_net, {})
        assert len(srv.requests) == asked and again.scorer.labels.nouns == pp.scorer.labels.nouns
        assert again.status()["removed"] == status["removed"] and again.status()["degraded"] is False
        srv.mode = "500"
        with pytest.warns(UserWarning, match="DEGRADED"):
            failed = build_postprocessor("negrefine", llm=spec, **{**FAST, "llm_seed": 1}).fit(tiny_net, {})
        assert failed.status()["degraded"] is True and "given up" in failed.status()["degraded_reason"]
        assert len(failed.scorer.labels) == len(nouns) + len(adjectives)
    feats = tiny_net.encode_image(torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    pred, conf = pp.score_features(feats)
    assert pred.shape == (3,) and bool(((conf > 0) & (conf < 3)).all())


def test_filtered_labels_file_skips_mining_and_llm(tiny_net, tmp_path):
    path = export_labels(NegativeLabels(["cloud", "river stone", "brick wall", "fog", "sand"],
                                        ["lively scene", "gigantic object"]), tmp_path / "f.txt")
    pp = build_postprocessor("negrefine", filtered_labels_file=str(path), n_groups=2,
                             llm=f"openai:m@http://127.0.0.1:{dead_port()}/v1").fit(tiny_net, {})
    assert pp.status()["degraded"] is False and pp.status()["negatives"] == 7
    feats = tiny_net.encode_image(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    pred, conf = pp.score_features(feats)
    sc = pp.scorer
    pos_idx, neg_idx, _ = top_matches(feats, sc.id_text, sc.neg_text, 100.0, 5, 5)
    names = sc.neg_names
    pair = torch.stack([torch.stack([tiny_net.encode_text(
        [f"{tiny_net.class_names[i]} and {names[j]}" for j in nrow], sc.params.noun_templates)
        for i in prow]) for prow, nrow in zip(pos_idx.tolist(), neg_idx.tolist())])
    expected = negrefine_score(feats, sc.id_text, sc.neg_text, pair, n_groups=2)
    assert torch.equal(pred, expected[0]) and torch.allclose(conf, expected[1], atol=1e-5)
    # an APS step (n_groups, mm_weight) reuses the banks; w = 0 leaves NegLabel's grouped score
    bank = sc.neg_text
    pp.set_hyperparam([2, 0.0])
    assert pp.scorer.neg_text is bank
    assert torch.allclose(pp.score_features(feats)[1],
                          negrefine_score(feats, sc.id_text, bank, pair, n_groups=2, weight=0.0)[1])


def test_without_llm_the_row_is_degraded_and_scores_the_unfiltered_negatives(tiny_net):
    nouns, adjectives = _initial(tiny_net)
    with pytest.warns(UserWarning, match="DEGRADED"):
        pp = build_postprocessor("negrefine", **FAST).fit(tiny_net, {})
    status = pp.status()
    assert status["degraded"] is True and "llm: none" in status["degraded_reason"]
    assert (pp.scorer.labels.nouns, pp.scorer.labels.adjectives) == (nouns, adjectives)
    with pytest.warns(UserWarning, match="DEGRADED"):
        dead = build_postprocessor("negrefine", llm=f"openai:m@http://127.0.0.1:{dead_port()}/v1",
                                   llm_timeout_s=2, **FAST).fit(tiny_net, {})
    assert dead.status()["degraded"] is True


def test_negrefine_runs_by_name_in_the_builtin_runner(tiny_net, minibench, tmp_path):
    path = export_labels(NegativeLabels(["cloud", "river stone", "brick wall", "fog", "sand", "tree"],
                                        ["lively scene", "gigantic object"]), tmp_path / "f.txt")
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    result = evaluate(build_postprocessor("negrefine", filtered_labels_file=str(path), n_groups=4), store)
    assert len(result.rows) == 7 and result.run_status.state == "random-weights"   # marked, not degraded


def test_pair_texts_are_memoised_boundedly_and_not_kept_by_the_net(tiny_net, tmp_path, monkeypatch):
    import openood_immuno.methods.negrefine.scorer as scorer_module

    path = export_labels(NegativeLabels(["cloud", "river stone", "brick wall", "fog", "sand"], []),
                         tmp_path / "f.txt")
    pp = build_postprocessor("negrefine", filtered_labels_file=str(path), n_groups=1).fit(tiny_net, {})
    feats = tiny_net.encode_image(torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(2)))
    memo_before = len(tiny_net._text_memo)
    conf = pp.score_features(feats)[1]
    assert len(tiny_net._text_memo) == memo_before          # the net keeps no pair text
    assert 0 < len(pp.scorer._pair_memo) <= 4 * 25
    monkeypatch.setattr(scorer_module, "PAIR_MEMO", 3)
    again = pp.score_features(feats)[1]
    assert torch.equal(again, conf) and len(pp.scorer._pair_memo) == 3
