"""ANTS switches for the paper's readings, pinned by hand: Eq. 7's ENS selection (seeded random M,
repeated prompting), mining off / fixed (Table 3's rows without negative-image mining), and the
MLLM call's image size and token budgets reaching the backend (the authors' LLaVA / Qwen paths)."""
import base64
import io

import pytest
import torch
from fake_endpoint import base_url, serving
from PIL import Image
from test_ants_mllm import _Endpoint
from test_ants_stream import BATCH, make, run, stream  # noqa: F401  (stream: a fixture)

from openood_immuno.llm.vision import ScriptedBackend
from openood_immuno.methods.ants import ANTSParams, NegativeImageMiner, ens_sentences, select_sentences
from openood_immuno.methods.ants.sentences import describe_images

TEN = [f"s{i}" for i in range(10)]
QWEN_ENS = "Describe this image in fewer than eight words. Answer:"   # no class name: accepted


# ---- Eq. 7 -------------------------------------------------------------------------------------
def test_eq7_selection_is_pinned_by_the_seed():
    """|sentences| >= M: M drawn uniformly without replacement, torch.randperm(n)[:M] on the
    stream's generator, kept in their order; the generator advances from update to update."""
    g = torch.Generator().manual_seed(0)
    assert select_sentences(TEN, 4, g) == ["s1", "s4", "s5", "s7"]          # first update, seed 0
    assert select_sentences(TEN, 4, g) == ["s2", "s3", "s4", "s9"]          # second update
    assert select_sentences(TEN, 4, torch.Generator().manual_seed(1)) == ["s1", "s2", "s5", "s6"]
    picks = sorted(torch.randperm(10, generator=torch.Generator().manual_seed(0))[:4].tolist())
    assert picks == [1, 4, 5, 7]                                             # the definition
    assert select_sentences(TEN[:3], 4, torch.Generator()) == TEN[:3]        # fewer: all kept


def _images(n):
    return [Image.new("RGB", (8, 8), (30 * i, 0, 0)) for i in range(n)]


def _counting_backend():
    """A fake MLLM whose every answer is new: 'view 0', 'view 1', ... in request order."""
    calls = []

    def answer(prompt, image):
        calls.append(prompt)
        return f"view {len(calls) - 1}"
    return ScriptedBackend(answer), calls


def _run(backend, n, selection, m, seed=0):
    describe = describe_images(backend, _images(n), ["describe"] * n, 10)
    return ens_sentences(describe, lambda answers: [a for a in answers if a], n, selection, m,
                         torch.Generator().manual_seed(seed))


def test_eq7_repeats_the_prompting_until_m_sentences():
    backend, calls = _counting_backend()
    sentences, rounds = _run(backend, 3, "paper", 7)
    # 3 images, M = 7: ceil(7 / 3) = 3 rounds of 3 requests -> 9 sentences -> 7 drawn (seed 0)
    assert rounds == 3 and len(calls) == 9
    assert sentences == ["view 0", "view 1", "view 2", "view 3", "view 4", "view 7", "view 8"]
    backend, calls = _counting_backend()
    assert _run(backend, 3, "code", 7) == (["view 0", "view 1", "view 2"], 1) and len(calls) == 3
    backend, calls = _counting_backend()                  # |X_neg| >= M: one round, M drawn
    assert _run(backend, 10, "paper", 4) == (["view 1", "view 4", "view 5", "view 7"], 1)


def test_eq7_stops_when_a_greedy_mllm_repeats_itself():
    calls = []
    backend = ScriptedBackend(lambda prompt, image: calls.append(1) or f"red {image.getpixel((0, 0))[0]}")
    sentences, rounds = _run(backend, 3, "paper", 7)
    assert (sentences, rounds, len(calls)) == (["red 0", "red 30", "red 60"], 2, 6)


def test_eq7_in_the_stream_caps_each_update_at_m(tiny_net, stream):  # noqa: F811
    pp = make(net=tiny_net, mode="far_only", ens_selection="paper", ens_sentences=5, ens_max_updates=2)
    run(pp, stream)
    status = pp.status()
    assert status["ens_updates"] == 2 and status["ens_bank"] <= 10
    assert 0 < len(pp.scorer.ens.texts) == status["ens_bank"]
    code = make(net=tiny_net, mode="far_only", ens_max_updates=2)
    run(code, stream)
    assert code.status()["ens_bank"] > status["ens_bank"]          # the code keeps one per image
    again = make(net=tiny_net, mode="far_only", ens_selection="paper", ens_sentences=5, ens_max_updates=2)
    run(again, stream)
    assert again.scorer.ens.texts == pp.scorer.ens.texts           # seeded: the same selection


# ---- mining off / fixed --------------------------------------------------------------------------
def _miner_params(min_cache: int, **kw) -> ANTSParams:
    return ANTSParams(init_threshold=0.8, eta=0.5, hist_bins=10, mine_min_cache=min_cache, ens_max_updates=5,
                      **kw)


def test_miner_off_mines_every_image_and_fixed_keeps_its_threshold():
    scores = torch.tensor([0.95, 0.2, 0.99, 0.5])
    preds = torch.tensor([3, 1, 3, 2])
    off = NegativeImageMiner(_miner_params(1, mining="off"))
    assert off.observe(scores, preds, list("abcd")).tolist() == [True] * 4
    assert off.ready() and [s for s, _ in off.take()] == list("abcd") and off.threshold is None
    assert dict(off.mined_predictions) == {3: 2, 1: 1, 2: 1}
    fixed = NegativeImageMiner(_miner_params(0, mining="fixed"))
    assert fixed.observe(scores, preds, list("abcd")).tolist() == [False, True, False, True]
    fixed.take()
    assert fixed.threshold == 0.8 and fixed.upper is None
    adaptive = NegativeImageMiner(_miner_params(0))
    adaptive.observe(scores, preds, list("abcd"))
    adaptive.take()
    assert adaptive.threshold != 0.8
    with pytest.raises(ValueError, match="mining"):
        _miner_params(0, mining="none")


def test_mining_off_describes_every_image_in_stream_order(tiny_net, stream):  # noqa: F811
    feats, paths = stream
    pp = make(net=tiny_net, mining="off", ens_max_updates=2, vsnl_count_over="mined")
    seen = []
    original = pp.scorer.backend.script
    def script(prompt, image):
        if image is not None:
            seen.append(image)
        return original(prompt, image)
    pp.scorer.backend.script = script
    run(pp, stream)
    # mine_min_cache 8 < 16 = one batch: each of the 2 updates describes one whole batch
    assert len(seen) == 2 * BATCH and pp.status()["threshold"] is None
    expected = [Image.open(p).convert("RGB").getpixel((0, 0)) for p in paths[:2 * BATCH]]
    assert [im.getpixel((0, 0)) for im in seen] == expected
    # the "mined" counts of VSNL then cover every prediction: the same bank as counting all
    every = make(net=tiny_net, mining="off", ens_max_updates=2, vsnl_count_over="all")
    run(every, stream)
    assert pp.scorer.vsnl.features is not None
    assert torch.equal(pp.scorer.vsnl.features, every.scorer.vsnl.features)


def test_mining_fixed_never_moves_the_threshold(tiny_net, stream):  # noqa: F811
    pp = make(net=tiny_net, mining="fixed")
    run(pp, stream)
    assert pp.status()["ens_updates"] >= 1 and pp.status()["threshold"] == 0.9


# ---- the MLLM call: image size and token budgets ----------------------------------------------------
@pytest.fixture
def endpoint():
    _Endpoint.seen = []
    with serving(_Endpoint) as srv:
        yield base_url(srv)


def _sent(payload):
    content = payload["messages"][0]["content"]
    images = [c for c in content if c["type"] == "image_url"]
    if not images:
        return None, payload["max_tokens"]
    raw = base64.b64decode(images[0]["image_url"]["url"].split(",", 1)[1])
    return Image.open(io.BytesIO(raw)).size, payload["max_tokens"]


@pytest.mark.parametrize("path, kw, image_size, ens_tokens, vsnl_tokens", [
    ("default (LLaVA path)", {}, (24, 24), 30, 100),
    ("authors' Qwen path", {"mllm_image_size": 56, "ens_max_new_tokens": 10, "vsnl_max_new_tokens": 50,
                            "ens_prompt": QWEN_ENS}, (56, 56), 10, 50)])
def test_image_size_and_token_budgets_reach_the_endpoint(tiny_net, stream, endpoint, monkeypatch,  # noqa: F811
                                                         path, kw, image_size, ens_tokens, vsnl_tokens):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    # min_bank_fill 0: this test reads what is sent, not how full the banks get
    pp = make(net=tiny_net, mllm=f"openai:tiny@{endpoint}", ens_max_updates=1, min_bank_fill=0, **kw)
    run(pp, stream)
    sent = [_sent(payload) for payload, _ in _Endpoint.seen]
    described = [s for s in sent if s[0] is not None]
    asked = [s for s in sent if s[0] is None]
    assert described and asked and not pp.status()["degraded"]
    assert set(described) == {(image_size, ens_tokens)}          # the stream's images are 24 x 24
    assert set(asked) == {(None, vsnl_tokens)}
    texts = {p["messages"][0]["content"][0]["text"] for p, _ in _Endpoint.seen if _sent(p)[0]}
    assert (texts == {QWEN_ENS}) == ("ens_prompt" in kw)


def test_qwen_processor_pixels_reach_the_hf_processor(tmp_path, monkeypatch):
    """The authors' Qwen path builds its processor with min_pixels 256*28*28, max_pixels
    1280*28*28 (a 56 x 56 image then reaches the model as 448 x 448)."""
    import transformers

    from openood_immuno.core.params import ParamError
    from openood_immuno.methods.ants import ANTSParams, load_mllm

    seen = []

    def processor(source, **kwargs):
        seen.append(kwargs)
        raise OSError("no weights in this test")
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", processor)
    qwen = ANTSParams(mllm=f"hf:{tmp_path}", mllm_strict=True, mllm_min_pixels=256 * 28 * 28,
                      mllm_max_pixels=1280 * 28 * 28)
    with pytest.raises(RuntimeError, match="no weights in this test"):
        load_mllm(qwen)
    with pytest.raises(RuntimeError, match="no weights in this test"):
        load_mllm(ANTSParams(mllm=f"hf:{tmp_path}", mllm_strict=True))
    assert (seen[0]["min_pixels"], seen[0]["max_pixels"]) == (200_704, 1_003_520)
    assert "min_pixels" not in seen[1] and "max_pixels" not in seen[1]       # default: the checkpoint's
    with pytest.raises(ParamError, match="processor of an hf: model"):
        ANTSParams(mllm="scripted", mllm_min_pixels=3136)
    with pytest.raises(ParamError, match="mllm_min_pixels must be <= mllm_max_pixels"):
        ANTSParams(mllm="hf:x/y", mllm_min_pixels=10, mllm_max_pixels=5)
