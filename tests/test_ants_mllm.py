"""MLLM backends: a real transformers VLM (tiny, random, built locally), an OpenAI-compatible
endpoint served locally, the scripted backend, and failure handling."""
import _thread
import base64
import io
import logging
import threading
import time

import pytest
import torch
from fake_endpoint import QuietJSONHandler, base_url, serving
from PIL import Image

from openood_immuno.llm import hub
from openood_immuno.llm.errors import BackendUnavailable
from openood_immuno.llm.parsing import parse_description, parse_list
from openood_immuno.llm.vision import (MLLMBackend, OpenAIVision, ScriptedBackend, TransformersVLM,
                                       build_vision_backend)

WORDS = ("a photo of the small red dog cat bird tree car boat house sky field water "
         "snowy mountain near lake with two people walking tiger lynx kayak").split()
CHAT = ("{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
        "<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
        "{% if add_generation_prompt %} ASSISTANT:{% endif %}")


def build_tiny_llava(folder):
    """A randomly initialised LLaVA (tiny CLIP vision tower + tiny Llama) with a word-level
    tokenizer trained here, saved as a local checkpoint folder. Nothing is downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator([" ".join(WORDS)] * 3, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, image_size=32, patch_size=8)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=CHAT)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    return str(build_tiny_llava(tmp_path_factory.mktemp("tiny_llava")))


def _images(n):
    return [Image.new("RGB", (40 + 7 * i, 30 + 5 * i), (40 * i % 255, 90, 200)) for i in range(n)]


def test_transformers_vlm_generates_batched_greedy_and_parses(tiny_vlm, caplog):
    backend = build_vision_backend(f"hf:{tiny_vlm}", batch_size=2, device="cpu")
    assert isinstance(backend, TransformersVLM)
    backend.load()
    assert backend.processor.tokenizer.padding_side == "left"
    prompts = [f"Describe this image in fewer than eight words. Do not include the class name {c}."
               for c in ("dog", "cat", "boat")]
    with caplog.at_level(logging.INFO, logger="openood_immuno.llm.vision"):
        answers = backend.generate(prompts, _images(3), max_new_tokens=6, task="ENS describe")
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert backend.cost.calls == 2 and backend.cost.requests == 3 and backend.cost.failures == 0
    assert backend.cost.images == 3
    assert 0 < backend.cost.tokens <= 3 * 6 and backend.cost.seconds > 0
    assert "ENS describe" in caplog.text
    # greedy: the same request gives the same answer, alone or in a left-padded batch
    again = backend.generate(prompts[:1], _images(1), max_new_tokens=6)
    assert again == answers[:1]
    parsed = [parse_description(answer, cls) for answer, cls in zip(answers, ("dog", "cat", "boat"))]
    assert any(parsed)
    for p, cls in zip(parsed, ("dog", "cat", "boat")):
        assert p is None or (cls not in p.split() and set(p.split()) <= set(WORDS))
    names = backend.generate(["Give five different class names that share visual features with "
                              "tiger, excluding tiger."], None, max_new_tokens=8, task="VSNL names")
    assert isinstance(names[0], str)
    assert all(n in " ".join(WORDS) for n in parse_list(names[0], "tiger", limit=5))


def test_transformers_vlm_missing_model_fails_clearly():
    backend = build_vision_backend("hf:/nonexistent/vlm-folder", device="cpu")
    with pytest.raises(RuntimeError, match="local folder"):
        backend.load()


class _Endpoint(QuietJSONHandler):
    """A minimal OpenAI-compatible server: /models and /chat/completions."""

    seen: list = []

    def do_GET(self):
        self.send_json({"data": [{"id": "tiny"}]})

    def do_POST(self):
        payload = self.read_json()
        _Endpoint.seen.append((payload, self.headers.get("Authorization")))
        content = payload["messages"][0]["content"]
        text = content[0]["text"]
        if "FAIL" in text:
            return self.send_json({"error": "boom"}, 500)
        if "HANG" in text:
            return self.hang()
        images = [c for c in content if c["type"] == "image_url"]
        if images:
            raw = base64.b64decode(images[0]["image_url"]["url"].split(",", 1)[1])
            w, h = Image.open(io.BytesIO(raw)).size
            answer = f"A {w} by {h} picture"
        else:
            answer = "1. lynx\n2. puma"
        self.send_json({"choices": [{"message": {"content": answer}}],
                        "usage": {"completion_tokens": 3}})


@pytest.fixture
def endpoint():
    _Endpoint.seen = []
    with serving(_Endpoint) as srv:
        yield base_url(srv)


def test_openai_compatible_endpoint(endpoint, monkeypatch):
    monkeypatch.setenv("TEST_MLLM_KEY", "sk-test")
    backend = build_vision_backend(f"openai:tiny@{endpoint}", batch_size=2, api_key_env="TEST_MLLM_KEY")
    assert isinstance(backend, OpenAIVision)
    backend.load()
    answers = backend.generate(["describe", "describe", "FAIL please"], _images(3), 12, "ENS describe")
    assert answers[:2] == ["A 40 by 30 picture", "A 47 by 35 picture"] and answers[2] is None
    assert backend.cost.failures == 1 and backend.cost.tokens == 6 and backend.cost.calls == 2
    assert backend.cost.images == 2 and backend.cost.failure_note() == "1 of 3 requests failed"
    payload, auth = _Endpoint.seen[0]
    assert auth == "Bearer sk-test" and payload["temperature"] == 0 and payload["max_tokens"] == 12
    assert payload["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert backend.generate(["similar to tiger"], None, 20) == ["1. lynx\n2. puma"]


def test_openai_endpoint_down_fails_at_load():
    backend = build_vision_backend("openai:tiny@http://127.0.0.1:9/v1", timeout_s=2)
    with pytest.raises(RuntimeError, match="not reachable"):
        backend.load()


def test_scripted_backend_is_deterministic_and_warns():
    with pytest.warns(UserWarning, match="not a model"):
        backend = build_vision_backend("scripted")
    a = backend.generate(["x", "y"], _images(2))
    assert a == backend.generate(["x", "y"], _images(2)) and all(s.startswith("A ") for s in a)
    names = parse_list(backend.generate(["similar to tiger"])[0], limit=5)
    assert len(names) == 5


def test_a_raising_backend_yields_none_and_a_warning(caplog):
    class Broken(MLLMBackend):
        spec = "broken"

        def _generate_batch(self, prompts, images, max_new_tokens):
            raise ConnectionError("endpoint down")

    backend = Broken(batch_size=2)
    with caplog.at_level(logging.WARNING):
        assert backend.generate(["a", "b", "c"]) == [None, None, None]
    assert backend.cost.failures == 3 and "endpoint down" in caplog.text
    wrong = ScriptedBackend(lambda p, im: "x")
    wrong._generate_batch = lambda prompts, images, n: ["only one"]
    assert wrong.generate(["a", "b"]) == [None, None]


@pytest.mark.parametrize("spec", ["gpt-4o", "hf:", "openai:model-without-url", "llava"])
def test_bad_specs_name_the_fix(spec):
    with pytest.raises(ValueError, match="unknown mllm .*hf:<model name or local path>"):
        build_vision_backend(spec)
    assert build_vision_backend("none") is None


def test_openai_url_without_model_uses_the_first_listed(endpoint):
    backend = build_vision_backend(f"openai:{endpoint}")
    backend.load()
    assert backend.model == "tiny" and backend.spec == f"openai:tiny@{endpoint}"


def test_an_endpoint_failing_every_request_is_counted_and_given_up(endpoint, caplog):
    backend = build_vision_backend(f"openai:tiny@{endpoint}", batch_size=2)
    backend.load()
    with caplog.at_level(logging.WARNING):
        answers = backend.generate(["FAIL"] * 14, _images(14))
    assert answers == [None] * 14 and len(_Endpoint.seen) == 10   # 5 batches of 2, then given up
    assert backend.cost.requests == 10 and backend.cost.failures == 10 and backend.cost.skipped == 4
    assert backend.cost.images == 0 and "given up after 5 calls in a row" in caplog.text
    assert backend.cost.failure_note() == "10 of 10 requests failed, 4 not sent (endpoint given up)"


def test_ctrl_c_during_concurrent_requests_stops_at_once(endpoint):
    backend = build_vision_backend(f"openai:tiny@{endpoint}", batch_size=4, timeout_s=30)

    def workers():
        return [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]

    before = len(workers())
    threading.Timer(0.5, _thread.interrupt_main).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        backend.generate(["HANG"] * 4, _images(4))
        time.sleep(10)   # not reached: the interrupt arrives while the requests hang
    assert time.monotonic() - start < 3
    deadline = time.monotonic() + 3
    while len(workers()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers()) <= before   # no worker left blocked on a socket


def test_offline_hub_vlm_not_cached_fails_in_seconds(monkeypatch):
    import transformers  # noqa: F401  (the import itself is not what is timed)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "request_json", lambda *a, **k: pytest.fail("the Hub was contacted"))
    backend = build_vision_backend("hf:openood-immuno-tests/no-such-vlm", device="cpu")
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="not in the local Hugging Face cache and HF_HUB_OFFLINE"):
        backend.load()
    assert time.monotonic() - start < 5
