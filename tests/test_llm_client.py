"""openood_immuno.llm plumbing: the spec grammar, the HTTP client (total deadline, classified
errors, API key, abort), offline detection of hf: models, the failure budget. Local servers
bind 127.0.0.1; nothing leaves the machine."""
import threading
import time

import pytest
from fake_endpoint import QuietJSONHandler, base_url, dead_port, serving

from openood_immuno.llm import hub
from openood_immuno.llm.cost import CostLog, FailureBudget
from openood_immuno.llm.errors import BackendUnavailable
from openood_immuno.llm.http import EndpointError, OpenAIClient
from openood_immuno.llm.spec import ModelSpec, SpecError, parse_spec


# ---- spec grammar --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, parsed", [
    ("hf:Qwen/Qwen2-VL-2B-Instruct", ModelSpec("hf", "Qwen/Qwen2-VL-2B-Instruct")),
    ("hf:/models/llava", ModelSpec("hf", "/models/llava")),
    ("openai:gpt-4o-mini@https://api.openai.com/v1", ModelSpec("openai", "gpt-4o-mini", "https://api.openai.com/v1")),
    ("openai:org/model:7b@http://localhost:8000/v1/", ModelSpec("openai", "org/model:7b", "http://localhost:8000/v1")),
    ("openai:http://127.0.0.1:8000/v1/chat/completions", ModelSpec("openai", "", "http://127.0.0.1:8000/v1")),
    ("none", ModelSpec("none")),
    (" None ", ModelSpec("none")),
])
def test_spec_grammar(text, parsed):
    assert parse_spec(text, "mllm") == parsed
    assert parse_spec(str(parsed), "mllm") == parsed


@pytest.mark.parametrize("text", ["gpt-4o", "hf:", "openai:", "openai:model-without-url",
                                  "openai:ftp://example/v1", "scripted", "llava", ""])
def test_spec_errors_name_the_option_and_every_form(text):
    with pytest.raises(SpecError, match=r"unknown --my-option .*'none', 'hf:<model name or local path>'.*"
                                        r"'openai:<model>@<base_url>'.*'openai:<base_url>'"):
        parse_spec(text, "--my-option")
    assert parse_spec("scripted", "mllm", ("none", "scripted")) == ModelSpec("scripted")


# ---- HTTP client ---------------------------------------------------------------------------------
class _Api(QuietJSONHandler):
    def _misbehave(self) -> bool:
        mode = self.server.mode
        if mode == "trickle":
            self.trickle(0.5)
        elif mode == "hang":
            self.hang()
        elif mode.isdigit():
            self.send_json({"error": "x"}, int(mode))
        elif mode == "html":
            self.send_body(b"<html>502 Bad Gateway</html>")
        elif mode == "no choices":
            self.send_json({"object": "error", "detail": "overloaded"})
        else:
            return False
        return True

    def do_GET(self):
        if not self._misbehave():
            self.send_json({"data": [{"id": "m1"}, {"id": "m2"}]})

    def do_POST(self):
        self.server.requests.append((self.read_json(), self.headers.get("Authorization")))
        if not self._misbehave():
            self.send_json({"choices": [{"message": {"content": "hello"}}], "usage": {"completion_tokens": 2}})


def test_good_answers_and_the_api_key_convention(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    with serving(_Api, mode="good") as srv:
        client = OpenAIClient(base_url(srv) + "/chat/completions", api_key_env="MY_KEY", timeout_s=5)
        assert client.base_url == base_url(srv) and client.models() == ["m1", "m2"]
        assert client.chat("m1", "hi", 7, 0.0, seed=3) == ("hello", 2)
        payload, auth = srv.requests[0]
        assert auth == "Bearer sk-test" and payload["max_tokens"] == 7 and payload["seed"] == 3
        monkeypatch.delenv("MY_KEY")
        client.chat("m1", "hi", 7, 0.0)
        assert srv.requests[1][1] is None   # no key set: no Authorization header


def test_an_endpoint_that_trickles_a_byte_every_half_second_times_out_at_the_total_deadline():
    with serving(_Api, mode="trickle") as srv:
        client = OpenAIClient(base_url(srv), timeout_s=1.5)
        start = time.monotonic()
        with pytest.raises(EndpointError, match="no answer within 1.5 s") as err:
            client.chat("m1", "hi", 5, 0.0)
        assert err.value.kind == "timeout" and time.monotonic() - start < 3.0


@pytest.mark.parametrize("mode, kind, status, fatal", [
    ("500", "http", 500, False), ("429", "http", 429, False), ("401", "http", 401, True),
    ("404", "http", 404, True), ("html", "bad_answer", None, False),
    ("no choices", "bad_answer", None, False), ("hang", "timeout", None, False)])
def test_errors_are_classified(mode, kind, status, fatal):
    with serving(_Api, mode=mode) as srv:
        with pytest.raises(EndpointError) as err:
            OpenAIClient(base_url(srv), timeout_s=0.5).chat("m1", "hi", 5, 0.0)
    assert (err.value.kind, err.value.status, err.value.fatal) == (kind, status, fatal)


def test_unreachable_and_bad_urls():
    with pytest.raises(EndpointError, match="is unreachable") as err:
        OpenAIClient(f"http://127.0.0.1:{dead_port()}/v1", timeout_s=2).models()
    assert err.value.kind == "unreachable"
    with pytest.raises(ValueError, match="http"):
        OpenAIClient("ftp://example/v1")
    with pytest.raises(ValueError, match="> 0"):
        OpenAIClient("http://127.0.0.1/v1", timeout_s=0)


def test_abort_ends_requests_in_flight_at_once():
    with serving(_Api, mode="hang") as srv:
        client = OpenAIClient(base_url(srv), timeout_s=30)
        errors = []

        def call():
            try:
                client.chat("m1", "hi", 5, 0.0)
            except EndpointError as exc:
                errors.append(exc.kind)

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while len(srv.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        start = time.monotonic()
        client.abort()
        for t in threads:
            t.join(5)
        assert time.monotonic() - start < 2 and errors == ["cancelled"] * 3


# ---- hf: offline in seconds ------------------------------------------------------------------------
UNCACHED = "openood-immuno-tests/no-such-model-anywhere"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was contacted")

    monkeypatch.setattr(hub, "request_json", refuse)


def test_offline_variable_and_an_uncached_model_fail_in_seconds_without_network(monkeypatch, no_network):
    for var in hub.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv(var, "1")
        start = time.monotonic()
        with pytest.raises(BackendUnavailable, match=f"not in the local Hugging Face cache and {var} is set"):
            hub.locate(UNCACHED)
        assert time.monotonic() - start < 5
        monkeypatch.delenv(var)


def test_a_local_folder_never_touches_the_hub(tmp_path, no_network, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub.locate(str(tmp_path)) == hub.HFSource(str(tmp_path), True)
    with pytest.raises(BackendUnavailable, match="no such local folder"):
        hub.locate(str(tmp_path / "missing"))


@pytest.mark.parametrize("hub_state", ["refused", "blackholed"])
def test_an_unreachable_hub_fails_in_seconds_with_one_line(hub_state, monkeypatch):
    for var in hub.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    with serving(_Api, mode="hang") as srv:
        url = f"http://127.0.0.1:{dead_port()}" if hub_state == "refused" else base_url(srv)
        monkeypatch.setenv("HF_ENDPOINT", url)
        start = time.monotonic()
        with pytest.raises(BackendUnavailable, match="Hub .* is unreachable .*huggingface-cli download") as err:
            hub.locate(UNCACHED)
        assert time.monotonic() - start < hub.PROBE_TIMEOUT_S + 2 and "\n" not in str(err.value)


# ---- counting and the failure budget ----------------------------------------------------------------
def test_failure_budget_consecutive_and_total_time():
    budget = FailureBudget(max_consecutive=3, budget_s=10)
    for _ in range(2):
        budget.record(False, 1.0, "HTTP 500")
    budget.record(True, 0.5)
    assert budget.consecutive == 0 and not budget.exhausted
    for _ in range(3):
        budget.record(False, 1.0, "HTTP 500")
    assert budget.exhausted and "3 calls in a row" in budget.reason() and "HTTP 500" in budget.reason()
    slow = FailureBudget(max_consecutive=100, budget_s=2.5)
    for ok in (False, True, False, True, False):
        slow.record(ok, 1.0)
    assert slow.exhausted and "3 s spent" in slow.reason()
    with pytest.raises(ValueError, match="give_up_after"):
        FailureBudget(max_consecutive=0)


def test_cost_log_failure_note():
    assert CostLog(requests=4).failure_note() is None
    assert CostLog(requests=104, failures=104).failure_note() == "104 of 104 requests failed"
    assert "2 not sent" in CostLog(requests=5, failures=5, skipped=2).failure_note()
