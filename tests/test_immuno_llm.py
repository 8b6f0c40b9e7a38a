"""LLM antibody generators: an OpenAI-compatible endpoint on a local stdlib server, and a tiny
randomly initialised transformers causal LM built from a local config (no download)."""
import logging
import re
import time

import pytest
from fake_endpoint import QuietJSONHandler, base_url, dead_port, serving

from openood_immuno.methods.immuno.antibodies import AntibodyBank
from openood_immuno.methods.immuno.generation import GeneratorUnavailable
from openood_immuno.methods.immuno.generators import build_bank, id_classes, make_generator

CLASSES = id_classes(["tench", "goldfish", "magpie"])


class ChatHandler(QuietJSONHandler):

    def do_GET(self):
        if self.path.endswith("/models"):
            self.send_json({"object": "list", "data": [{"id": "tiny-chat"}]})
        else:
            self.send_error(404)

    def do_POST(self):
        payload = self.read_json()
        self.server.requests.append(payload)
        mode = self.server.mode
        if mode in ("500", "401"):
            self.send_error(int(mode))
            return
        if mode == "dead":
            self.hang()
            return
        if mode == "slow":
            time.sleep(1.0)
        prompt = payload["messages"][0]["content"]
        if mode in ("empty", "null"):
            self.send_json({"choices": [{"message": {"role": "assistant",
                                                     "content": None if mode == "null" else "  \n"}}]})
            return
        if mode == "garbage":
            content = "@@@ ### !!!\n\u2588\u2588\u2588 ~~~ ::::\nthe the the the the the"
        elif "look visually similar" in prompt:
            content = "Here you go:\n1. Carp - a fish\n2. **Koi**\n3) orfe\n4. chub"
        else:
            c = re.search(r"descriptions of a (.+?) in an impossible", prompt).group(1)
            content = f"1. A {c} made of clouds\n2. a melting {c}\n3. a {c} made of glass"
        self.send_json({"choices": [{"message": {"role": "assistant", "content": content}}]})


@pytest.fixture()
def server():
    with serving(ChatHandler, mode="good") as srv:
        yield srv


def url(srv, model=""):
    return f"openai:{model}@{base_url(srv)}" if model else f"openai:{base_url(srv)}"


def openai_gen(srv, model="", **kw):
    return make_generator(url(srv, model), n_near=3, n_contextual=2, retry_wait=0, **kw)


def test_openai_good_answers_fill_the_bank(server, tmp_path):
    bank = build_bank(openai_gen(server, retries=0), CLASSES, tmp_path / "b.json", progress=False)
    assert not bank.short and not bank.missing()
    assert [a.text for a in bank.antibodies_for("tench")] == [
        "Carp", "Koi", "orfe", "A tench made of clouds", "a melting tench"]
    assert all(a.source == "openai:tiny-chat" for a in bank.antibodies_for("magpie"))
    assert bank.provenance["model"] == "tiny-chat" and bank.provenance["generator"] == "llm-openai"
    req = server.requests[0]
    assert req["model"] == "tiny-chat" and isinstance(req["seed"], int) and "tench" in req["messages"][0]["content"]


def test_openai_garbage_is_logged_and_the_run_continues(server, tmp_path, caplog):
    server.mode = "garbage"
    with caplog.at_level(logging.WARNING, logger="openood_immuno.methods.immuno.generators"):
        bank = build_bank(openai_gen(server, retries=1), CLASSES, tmp_path / "b.json", progress=False)
    assert sorted(bank.short) == ["goldfish", "magpie", "tench"] and not bank.missing()
    assert len(server.requests) == 3 * 2 * 2  # classes x kinds x (1 + retries)
    assert any("0 usable of" in p for p in bank.short["tench"]["problems"])
    assert caplog.text.count("fell short") == 3
    saved = AntibodyBank.load(tmp_path / "b.json")
    assert saved.short == bank.short


@pytest.mark.parametrize("mode", ["empty", "null"])
def test_openai_empty_answers_are_failed_requests_and_leave_classes_pending(server, tmp_path, mode):
    server.mode = mode
    gen = openai_gen(server, retries=1, give_up_after=100)
    bank = build_bank(gen, CLASSES, tmp_path / "b.json", progress=False)
    assert bank.missing() == ["tench", "goldfish", "magpie"]   # no answer: asked again on resume
    cost = gen.backend.cost
    assert cost.failures == cost.unusable == cost.requests == 3 * 2 * 2
    assert cost.failure_note() == "12 of 12 requests failed (12 answered no usable text)"


def test_openai_http_500_leaves_classes_pending_then_resume_fills_them(server, tmp_path, caplog):
    server.mode = "500"
    out = tmp_path / "b.json"
    with caplog.at_level(logging.WARNING):   # a failure budget that these 12 failures do not spend
        bank = build_bank(openai_gen(server, retries=1, give_up_after=100), CLASSES, out, progress=False)
    assert bank.missing() == ["tench", "goldfish", "magpie"] and "HTTP 500" in caplog.text
    assert "re-run the same command" in caplog.text
    server.mode = "good"
    bank = build_bank(openai_gen(server, retries=1), CLASSES, out, progress=False)
    assert not bank.missing() and not bank.short


def test_openai_stops_after_consecutive_failures_and_saves(server, tmp_path):
    out = tmp_path / "b.json"
    build_bank(openai_gen(server), CLASSES[:1], tmp_path / "warm.json", progress=False)
    gen = openai_gen(server, retries=0)
    server.mode = "500"
    with pytest.raises(GeneratorUnavailable, match="no answer for 2 classes in a row.*saved in.*resume"):
        build_bank(gen, CLASSES, out, progress=False, max_consecutive_failures=2)
    assert AntibodyBank.load(out).missing() == ["tench", "goldfish", "magpie"]


def test_openai_timeout_is_reported(server, tmp_path, caplog):
    server.mode = "slow"
    gen = openai_gen(server, retries=0, timeout_s=0.3)
    with caplog.at_level(logging.WARNING):
        bank = build_bank(gen, CLASSES[:1], tmp_path / "b.json", progress=False)
    assert bank.missing() == ["tench"] and "no answer within 0.3 s" in caplog.text


def test_openai_unavailable_endpoint_and_auth_errors_are_clear(server, tmp_path):
    with pytest.raises(GeneratorUnavailable, match="unreachable.*start the server"):
        make_generator(f"openai:http://127.0.0.1:{dead_port()}/v1")
    with pytest.raises(ValueError, match="unknown generator 'openai:ftp://example/v1' .*http"):
        make_generator("openai:ftp://example/v1")
    server.mode = "401"
    with pytest.raises(GeneratorUnavailable, match="HTTP 401.*API key.*saved in"):
        build_bank(openai_gen(server, model="x"), CLASSES, tmp_path / "b.json", progress=False)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A random 1-layer GPT-2 and a BPE tokenizer trained here on a few sentences."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_lm")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["list things that look similar to a tench but are not a tench",
              "1. carp 2. koi 3. a melting goldfish made of clouds", "numbered list, one per line"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="</s>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(fast), n_positions=1024, n_embd=32, n_layer=1, n_head=2,
                        eos_token_id=fast.eos_token_id, bos_token_id=fast.eos_token_id,
                        pad_token_id=fast.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    return str(path)


def test_transformers_tiny_lm_garbage_is_recorded_as_short(tiny_lm, tmp_path):
    gen = make_generator(f"hf:{tiny_lm}", n_near=3, n_contextual=2, retries=1, retry_wait=0,
                         max_new_tokens=16)
    bank = build_bank(gen, CLASSES[:2], tmp_path / "b.json", progress=False)
    assert not bank.missing() and sorted(bank.short) == ["goldfish", "tench"]
    assert all(bank.short[c]["problems"] for c in bank.short)
    assert bank.provenance["generator"] == "llm-hf" and bank.provenance["model"] == tiny_lm
    assert bank.provenance["params"]["max_new_tokens"] == 16


def test_transformers_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(GeneratorUnavailable, match="could not load the transformers model"):
        make_generator(f"hf:{tmp_path / 'no-such-model'}")


def test_the_model_named_in_the_spec_is_used_without_listing(server, tmp_path):
    bank = build_bank(openai_gen(server, model="other-chat", retries=0), CLASSES[:1], tmp_path / "b.json",
                      progress=False)
    assert bank.provenance["model"] == "other-chat" and server.requests[0]["model"] == "other-chat"


def test_a_dead_endpoint_is_given_up_after_the_consecutive_failure_cut_off(server, tmp_path):
    server.mode = "dead"   # accepts the connection, never answers
    gen = openai_gen(server, model="tiny-chat", retries=2, timeout_s=0.2, give_up_after=3)
    start = time.monotonic()
    with pytest.raises(GeneratorUnavailable, match=r"given up after 3 calls in a row without an answer.*"
                                                   r"no answer within 0.2 s.*3 of 3 requests failed.*saved in"):
        build_bank(gen, CLASSES, tmp_path / "b.json", progress=False)
    assert time.monotonic() - start < 5 and len(server.requests) == 3
    assert AntibodyBank.load(tmp_path / "b.json").missing() == ["tench", "goldfish", "magpie"]


def test_a_dead_endpoint_is_given_up_after_the_time_budget(server, tmp_path):
    server.mode = "dead"
    gen = openai_gen(server, model="tiny-chat", retries=2, timeout_s=0.2, give_up_after=100,
                     failure_budget_s=0.5)
    start = time.monotonic()
    with pytest.raises(GeneratorUnavailable, match=r"spent in calls without an answer \(budget 0.5 s\)"):
        build_bank(gen, CLASSES, tmp_path / "b.json", progress=False)
    assert time.monotonic() - start < 5 and len(server.requests) == 3
    assert gen.backend.cost.failures == 3 and gen.backend.cost.requests == 3


def test_requests_and_failures_are_counted(server, tmp_path):
    gen = openai_gen(server, retries=1)
    build_bank(gen, CLASSES[:1], tmp_path / "b.json", progress=False)
    assert gen.backend.cost.requests == 2 and gen.backend.cost.failures == 0
    server.mode = "500"
    build_bank(gen, CLASSES[1:2], tmp_path / "c.json", progress=False)
    assert gen.backend.cost.requests == 6 and gen.backend.cost.failures == 4
    assert gen.backend.cost.failure_note() == "4 of 6 requests failed"


def test_unknown_generator_options_are_named():
    with pytest.raises(ValueError, match=r"unknown LLM generator option\(s\) \['timeout'\]"):
        make_generator("openai:http://127.0.0.1:9/v1", timeout=5)


def test_offline_hub_model_not_cached_fails_in_seconds_with_one_line(monkeypatch):
    import transformers  # noqa: F401  (the import itself is not what is timed)
    from openood_immuno.llm import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "request_json", lambda *a, **k: pytest.fail("the Hub was contacted"))
    start = time.monotonic()
    with pytest.raises(GeneratorUnavailable, match="could not load the transformers model .*not in the "
                                                   "local Hugging Face cache and HF_HUB_OFFLINE is set") as err:
        make_generator("hf:openood-immuno-tests/no-such-llm")
    assert time.monotonic() - start < 5 and "\n" not in str(err.value)
