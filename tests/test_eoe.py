"""EOE: the authors' prompts and parsing, the score on hand-made tensors, names from a file or a
fake OpenAI-compatible LLM, degraded without an LLM, and a run by name in the builtin runner."""
import pytest
import torch

from fake_endpoint import FakeChat, base_url, dead_port, serving
from openood_immuno import build_postprocessor
from openood_immuno.data.benchmarks import BenchmarkLists
from openood_immuno.experiments.runner import FeatureStore, evaluate
from openood_immuno.methods.eoe import (clean_names, first_prompts, follow_up_count, parse_answer,
                                        write_names)
from openood_immuno.scores.eoe import eoe_score


class ChatHandler(FakeChat):
    """Answers every chat request with three '- ' names (numbered per request) and a chatty line."""

    def answer(self, payload) -> str:
        k = len(self.server.requests)
        return f"Sure:\n- Cloud {k}\n- river stone {k}\n- tench\n"


def test_score_is_max_id_softmax_minus_beta_max_outlier_softmax():
    ids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    outs = torch.tensor([[-1.0, 0.0]])
    v = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    pred, s = eoe_score(v, ids, outs, temperature=1.0, beta=0.5)
    e = torch.e
    # image 0: cos (1, 0 | -1) -> p = (e, 1, 1/e) / (e + 1 + 1/e); image 1: cos (-1, 0 | 1)
    z = e + 1 + 1 / e
    assert s.tolist() == pytest.approx([e / z - 0.5 / (e * z), 1 / z - 0.5 * e / z])
    assert pred.tolist() == [0, 1]
    # no outlier: MCM's max softmax over the ID classes
    _, mcm = eoe_score(v, ids, ids.new_zeros((0, 2)))
    assert mcm.tolist() == pytest.approx([e / (e + 1), 1 / (1 / e + 1)])
    with pytest.raises(ValueError, match="temperature"):
        eoe_score(v, ids, outs, temperature=0)


def test_authors_parsing_and_cleanup():
    assert parse_answer("Here:\n- Gray Wolf\n-bad\n * no\n- red panda") == ["Gray Wolf", "red panda"]
    ids = ["tench", "Great White Shark"]
    raw = ["Gray Wolf", "gray wolf", "TENCH", "white cloud", "river"]
    assert clean_names(raw, ids, "far") == ["gray wolf", "white cloud", "river"]
    # near: a name sharing a word with an ID class name is dropped (case-sensitive, as the authors')
    assert clean_names(raw, ids, "near") == ["gray wolf", "white cloud", "river"]
    assert clean_names(["great lake", "shark fin", "river"], ["great", "shark"], "near") == ["river"]


def test_authors_prompts_per_task():
    classes = ["husky", "sea_lion"]
    (far,) = first_prompts("far", classes, "", 500)
    assert "images of 2 distinct categories: [['husky', 'sea_lion']]" in far
    assert far.endswith("A: These 50 items are:\n")
    near = first_prompts("near", classes, "", 3)
    assert len(near) == 2 and "Given the image category [sea lion]" in near[1]
    assert "There are 3 classes similar to [sea lion]" in near[1]
    (fine,) = first_prompts("fine_grained", classes, "bird", 500)
    assert "containing 2 different species of bird" in fine
    assert (follow_up_count("far", 500), follow_up_count("far", 50), follow_up_count("near", 3)) == (9, 0, 0)
    with pytest.raises(ValueError, match="class_type"):
        first_prompts("fine_grained", classes, "", 500)


def test_names_file_scores_and_is_not_degraded(tiny_net, tmp_path):
    path = write_names(["cloud", "river stone", "tench", "Cloud"], tmp_path / "names.txt")
    pp = build_postprocessor("eoe", outlier_names_file=str(path)).fit(tiny_net, {})
    assert pp.scorer.names == ["cloud", "river stone"]     # "tench" is an ID class, "Cloud" a repeat
    assert pp.status()["degraded"] is False
    feats = tiny_net.encode_image(torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    pred, conf = pp.score_features(feats)
    expected = eoe_score(feats, tiny_net.encode_text(tiny_net.class_names, ("a photo of a {}",)),
                         tiny_net.encode_text(["cloud", "river stone"], ("a photo of a {}",)))
    assert torch.allclose(conf, expected[1]) and torch.equal(pred, expected[0])


def test_without_llm_the_row_is_degraded_and_scores_mcm(tiny_net):
    with pytest.warns(UserWarning, match="DEGRADED"):
        pp = build_postprocessor("eoe").fit(tiny_net, {})
    status = pp.status()
    assert status["degraded"] is True and "llm: none" in status["degraded_reason"]
    with pytest.warns(UserWarning, match="DEGRADED"):
        dead = build_postprocessor("eoe", llm=f"openai:m@http://127.0.0.1:{dead_port()}/v1",
                                   llm_timeout_s=2).fit(tiny_net, {})
    assert dead.status()["degraded"] is True and "1 of 1 LLM requests failed" in dead.status()["degraded_reason"]


def test_fake_llm_envisions_far_names_and_caches_them(tiny_net):
    net = tiny_net
    with serving(ChatHandler, mode="ok") as srv:
        spec = f"openai:fake-llm@{base_url(srv)}"
        pp = build_postprocessor("eoe", llm=spec, task="far", L=100).fit(net, {})
        # far, L = 100: the opening prompt and one follow-up carrying the conversation so far
        assert len(srv.requests) == 2
        follow = srv.requests[1]["messages"][0]["content"]
        assert follow.startswith(srv.requests[0]["messages"][0]["content"]) and "50 more" in follow
        assert srv.requests[0]["temperature"] == 0.0
        assert pp.scorer.names == ["cloud 1", "river stone 1", "cloud 2", "river stone 2"]
        assert pp.status()["degraded"] is False and pp.status()["llm_cost"]["requests"] == 2
        again = build_postprocessor("eoe", llm=spec, task="far", L=100).fit(net, {})
        assert len(srv.requests) == 2 and again.scorer.names == pp.scorer.names   # from the cache
        srv.mode = "500"
        with pytest.warns(UserWarning, match="DEGRADED"):
            failed = build_postprocessor("eoe", llm=spec, task="far", L=150).fit(net, {})
        assert failed.status()["degraded"] is True


def test_eoe_runs_by_name_in_the_builtin_runner(tiny_net, minibench, tmp_path):
    path = write_names(["cloud", "river stone", "brick wall"], tmp_path / "names.txt")
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    result = evaluate(build_postprocessor("eoe", outlier_names_file=str(path)), store)
    assert len(result.rows) == 7 and result.run_status.state == "random-weights"   # the tiny net: marked, not degraded


def test_fine_grained_without_class_type_is_refused():
    from openood_immuno.core.params import ParamError

    with pytest.raises(ParamError, match="class_type"):
        build_postprocessor("eoe", task="fine_grained")
    assert build_postprocessor("eoe", task="fine_grained", class_type="bird").params.class_type == "bird"
