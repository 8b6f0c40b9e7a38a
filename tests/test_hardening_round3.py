"""Round 3 of bad inputs (issue 18, classes D and G): each refused in one line naming the option
or file, before expensive work; a newcomer's first hour (offline in seconds, resources checked up
front, "did you mean" by meaning)."""
from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import pytest

from benchmark_fixtures import cut_root

from openood_immuno.cli import main, run

pytestmark = pytest.mark.filterwarnings("ignore:.*with RANDOM weights")
TINY = ["--model", "ImmunoTiny-ViT", "--device", "cpu", "--pretrained", "none"]
LISTS = {"test_imagenet.txt": 4, "test_ssb_hard.txt": 3, "test_ninco.txt": 3, "test_inaturalist.txt": 3,
         "test_textures.txt": 3, "test_openimage_o.txt": 3}


@pytest.fixture
def small_root(minibench, tmp_path):
    """A data_root with the test lists cut to 3-4 images; ``images_largescale/`` is a real folder
    (its sub-folders link to minibench's) so a test can put odd files in it."""
    return cut_root(minibench, tmp_path / "data", LISTS)


@pytest.fixture
def no_model(monkeypatch):
    """Building a model fails the test: the refusal must come first."""
    import openood_immuno.models.clip_net as clip_net

    monkeypatch.setattr(clip_net, "build_clip_net", lambda *a, **k: pytest.fail("model built before checks"))


def _eval_argv(root, out, *extra):
    return ["eval", "--data-root", str(root), *TINY, "--postprocessors", "mcm", "--engine", "builtin",
            "--num-workers", "0", "--output-dir", str(out), *extra]


def _one_line_exit_2(capsys, argv, *needles):
    """``openood-immuno ARGV`` exits 2 with one line on stderr holding every needle."""
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


# ---- D: image lists ----------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["./{p}", "{d}//{f}", "imagenet_1k/../{p}", "{d}/./{f}"])
def test_duplicates_after_path_normalisation_are_refused(tmp_path, spelling):
    from openood_immuno.data.lists import read_imglist

    plain = "imagenet_1k/val/a.JPEG"
    d, f = plain.rsplit("/", 1)
    other = spelling.format(p=plain, d=d, f=f)
    lst = tmp_path / "l.txt"
    lst.write_text(f"{plain} 1\nimagenet_1k/val/b.JPEG 2\n{other} 1\n")
    with pytest.raises(ValueError, match=rf"lists 1 image\(s\) more than once \(e\.g\. '{re.escape(other)}' at lines "
                                         r"1 and 3 \(as 'imagenet_1k/val/a\.JPEG'\).*remove the duplicated"):
        read_imglist(str(lst), 1000)


def test_duplicates_after_normalisation_through_eval(small_root, tmp_path, capsys, no_model):
    test_list = small_root / "benchmark_imglist" / "imagenet" / "test_imagenet.txt"
    first = test_list.read_text().splitlines()[0]
    test_list.write_text(test_list.read_text() + "./" + first + "\n")
    _one_line_exit_2(capsys, _eval_argv(small_root, tmp_path / "out"), "test_imagenet.txt",
                     "more than once", "at lines 1 and 5")


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


@pytest.mark.parametrize("make, kind", [(_fifo, "a FIFO"), (_socket, "a socket"),
                                        (lambda p: Path("/dev/null"), "a character device"),
                                        (lambda p: (p.mkdir(), p)[1], "a folder")],
                         ids=["fifo", "socket", "device", "folder"])
def test_special_files_listed_as_images_are_refused_not_read(small_root, tmp_path, capsys, no_model,
                                                               make, kind):
    target = make(small_root / "images_largescale" / "odd.jpg")
    rel = os.path.relpath(target, small_root / "images_largescale")
    (small_root / "benchmark_imglist" / "odd.txt").write_text(f"{rel} -1\n")
    signal.alarm(20)   # reading a FIFO would block: fail instead of hanging the suite
    try:
        line = _one_line_exit_2(capsys, _eval_argv(small_root, tmp_path / "out", "--extra-ood",
                                                   "odd=benchmark_imglist/odd.txt"),
                                f"is {kind}", "odd.txt", "not an image file")
        from openood_immuno.data.lists import load_rgb

        with pytest.raises(ValueError, match=f"is {kind}"):
            load_rgb(str(target))
    finally:
        signal.alarm(0)
    assert "odd.jpg" in line or "/dev/null" in line


# ---- D: numeric flags and seeds -----------------------------------------------------------------
@pytest.mark.parametrize("flag, value, message", [
    ("--score-batch-size", "0", "--score-batch-size 0: must be an integer >= 1"),
    ("--score-batch-size", "-5", "--score-batch-size -5: must be an integer >= 1"),
    ("--batch-size", "0", "--batch-size 0: must be an integer >= 1"),
    ("--num-workers", "-1", "--num-workers -1: must be an integer >= 0"),
])
def test_non_positive_sizes_are_refused_before_any_work(small_root, tmp_path, capsys, no_model, flag,
                                                        value, message):
    _one_line_exit_2(capsys, _eval_argv(small_root, tmp_path / "out", f"{flag}={value}"), message)


def test_numeric_flags_of_other_commands_are_checked_too(capsys, tmp_path):
    _one_line_exit_2(capsys, ["antibodies", "--id", "imagenet", "--generator", "wordnet", "--out",
                              str(tmp_path / "b.json"), "--timeout", "nan"], "--timeout nan: pass a finite")
    _one_line_exit_2(capsys, ["antibodies", "--id", "imagenet", "--generator", "wordnet", "--out",
                              str(tmp_path / "b.json"), "--seed", str(2**32)], "--seed 4294967296 is past")
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("seeds, message", [
    ("١,٢", "'١' is not a non-negative integer in ASCII digits"),
    ("--1", "'--1' is not a non-negative integer"),
    ("-1", "'-1' is not a non-negative integer"),
    ("0,4294967296", "4294967296 is past 4294967295"),
    ("0,,1", "'' is not a non-negative integer"),
    ("0,0", "repeats a seed"),
])
def test_bad_seeds_are_refused_in_one_line(small_root, tmp_path, capsys, no_model, seeds, message):
    _one_line_exit_2(capsys, _eval_argv(small_root, tmp_path / "out", f"--seeds={seeds}"), "--seeds",
                     message)


def test_largest_seed_is_accepted():
    from openood_immuno.cli.args import parse_seeds

    assert parse_seeds("0, 4294967295") == [0, 2**32 - 1]


# ---- D: sweep keys through --pp-arg; G: "did you mean" by meaning ----------------------------------
@pytest.mark.parametrize("item, needles", [
    ("mcm.T_list=[0.5,1]", ["mcm.T_list is a sweep list", "set one value with mcm.T=VALUE",
                            "postprocessor_sweep"]),
    ("mcm.tau_list=[1]", ["mcm.tau_list is a sweep list", "mcm.T=VALUE"]),
])
def test_sweep_keys_through_pp_arg_are_named_as_sweeps(small_root, tmp_path, capsys, no_model, item,
                                                       needles):
    line = _one_line_exit_2(capsys, _eval_argv(small_root, tmp_path / "out", "--pp-arg", item), *needles)
    assert "did you mean" not in line


@pytest.mark.parametrize("cls, key, meant", [
    ("mcm", "temperature", "T"), ("mcm", "Temperature", "T"), ("mcm", "temp", "T"),
    ("mcm", "tempates", "templates"), ("mcm", "prompts", "templates"),
    ("immuno", "learning_rate", "lr"), ("immuno", "epoch", "epochs"), ("immuno", "lamda", "lambda"),
    ("immuno", "threshold", "tau"), ("neglabel", "num_groups", "n_groups"), ("neglabel", "eta", "quantile"),
    ("ants", "vsnl_topk_list", "vsnl_top_k_list"),
])
def test_did_you_mean_uses_meaning_and_aliases(cls, key, meant):
    from openood_immuno.methods.ants.params import ANTSParams
    from openood_immuno.methods.immuno.params import ImmunoParams
    from openood_immuno.methods.mcm.params import MCMParams
    from openood_immuno.methods.neglabel.params import NegLabelParams

    params = {"mcm": MCMParams, "immuno": ImmunoParams, "neglabel": NegLabelParams, "ants": ANTSParams}[cls]
    assert params.suggest(key) == meant


def test_did_you_mean_temperature_through_the_cli(small_root, tmp_path, capsys, no_model):
    _one_line_exit_2(capsys, _eval_argv(small_root, tmp_path / "out", "--pp-arg", "mcm.temperature=2"),
                     "unknown parameter(s) ['temperature']", "did you mean 'T' for 'temperature'?")


# ---- G: offline in seconds, one line ----------------------------------------------------------------
@pytest.fixture
def unreachable_hub(monkeypatch):
    """A Hub that refuses connections (a dead local port), weights not cached, no offline variable;
    counts the probes. The process's offline state is restored afterwards."""
    from openood_immuno.llm import hub

    for var in hub.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(hub, "hub_file_cached", lambda repo, filename: False)
    probes = []
    real = hub.hub_problem
    monkeypatch.setattr(hub, "hub_problem", lambda name, *a, **k: probes.append(name) or real(name, *a, **k))
    hub.reset_hub_state()
    yield probes
    hub.reset_hub_state()


def test_offline_default_model_fails_in_seconds_with_one_line(small_root, tmp_path, capsys, unreachable_hub,
                                                             monkeypatch):
    import time

    import open_clip
    from huggingface_hub import constants

    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda *a, **k: pytest.fail("open_clip asked to download while offline"))
    argv = ["eval", "--data-root", str(small_root), "--postprocessors", "mcm", "--engine", "builtin",
            "--num-workers", "0", "--device", "cpu", "--output-dir", str(tmp_path / "out")]
    start = time.monotonic()
    _one_line_exit_2(capsys, argv, "could not obtain pretrained weights ViT-B-16/openai",
                     "not in the local Hugging Face cache", "is unreachable", "--pretrained /path/to/checkpoint")
    assert time.monotonic() - start < 10
    assert constants.HF_HUB_OFFLINE, "the process did not go offline after the failed probe"
    # a second model in the same process: no second probe, no wait
    start = time.monotonic()
    _one_line_exit_2(capsys, argv, "is unreachable")
    assert time.monotonic() - start < 5 and len(unreachable_hub) == 1


def test_offline_antibodies_command_builds_the_bank_and_skips_the_summary_in_one_line(tmp_path, capsys,
                                                                                      unreachable_hub):
    classes = tmp_path / "classes.txt"
    classes.write_text("tench\ngoldfish\n")
    out = tmp_path / "bank.json"
    assert run(["antibodies", "--id", str(classes), "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    skipped = [line for line in stdout.splitlines() if "summary skipped" in line]
    assert len(skipped) == 1 and "is unreachable" in skipped[0] and out.is_file()
    assert len(unreachable_hub) == 1


# ---- G: resources checked before the model -------------------------------------------------------------
@pytest.mark.parametrize("pp, extra", [("neglabel", []), ("ants", ["--pp-arg", "ants.mllm=none"]),
                                       ("immuno_zeroshot", [])])
def test_missing_wordnet_is_reported_before_the_model_is_built(small_root, tmp_path, capsys, no_model,
                                                               monkeypatch, pp, extra):
    import openood_immuno.data.wordnet as wordnet

    def absent():
        raise LookupError("Resource wordnet not found")

    monkeypatch.setattr(wordnet, "wordnet_root", absent)
    argv = _eval_argv(small_root, tmp_path / "out", *extra)
    argv[argv.index("mcm")] = pp
    _one_line_exit_2(capsys, argv, f"postprocessor '{pp}' needs the WordNet corpus of nltk",
                     "NLTK_DATA", "nltk.downloader wordnet")


def test_a_neglabel_file_needs_no_wordnet(tmp_path, monkeypatch):
    from openood_immuno.methods.neglabel.params import NegLabelParams

    assert NegLabelParams().resources() == ("wordnet",)
    assert NegLabelParams.from_mapping({"neg_labels_file": "x.txt"}).resources() == ()


# ---- D: output files --------------------------------------------------------------------------------------
def test_neglabels_out_naming_a_folder_is_refused_before_mining(tmp_path, capsys, no_model):
    _one_line_exit_2(capsys, ["neglabels", "--out", str(tmp_path), *TINY],
                     f"--out '{tmp_path}' is a folder: pass a file path")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_line_exit_2(capsys, ["neglabels", "--out", str(blocker / "x.txt"), *TINY], "is a file, not a folder")
    _one_line_exit_2(capsys, ["antibodies", "--out", str(tmp_path), "--no-filter-summary"],
                     f"--out '{tmp_path}' is a folder")


# ---- D: model JSON and checkpoint ---------------------------------------------------------------------------
TINY_JSON = Path(__file__).resolve().parents[1] / "openood_immuno" / "models" / "model_configs" / "ImmunoTiny-ViT.json"


@pytest.mark.parametrize("text, needles", [
    ('{"embed_dim": 64, "vision_cfg": {', ["is not valid JSON (line 1, column", "an example:"]),
    ('{"embed_dim": 64,\n "vision_cfg": {"width": 64},\n}', ["is not valid JSON (line 3, column 1"]),
    ('{"embed_dim": 64}', ["lacks the key(s) ['vision_cfg', 'text_cfg']"]),
    ('[1, 2]', ["holds a JSON list, not an object"]),
    ('{"embed_dim": "64", "vision_cfg": {}, "text_cfg": []}', ["embed_dim, text_cfg must be an integer, an object"]),
    ('{"embed_dim": 64, "vision_cfg": {"widht": 64}, "text_cfg": {}}', ["could not be built by open_clip",
                                                                       "widht", "vision_cfg and text_cfg"]),
], ids=["truncated", "trailing-comma", "missing-keys", "not-object", "wrong-types", "unknown-key"])
def test_broken_or_partial_model_json_names_the_file_and_the_keys(tmp_path, capsys, text, needles):
    config = tmp_path / "MyModel.json"
    config.write_text(text)
    line = _one_line_exit_2(capsys, ["neglabels", "--out", str(tmp_path / "n.txt"), "--model", str(config),
                                     "--pretrained", "none", "--device", "cpu"], str(config), *needles)
    assert "Traceback" not in line
    # open_clip rescans every config path it was given at each registration: a broken file must
    # never reach it, or every later model of the process would fail on it
    from openood_immuno.models.loading import _register_local_model_configs, check_model_config

    _register_local_model_configs()
    assert check_model_config(str(TINY_JSON))["embed_dim"] == 64


def test_model_json_folder_is_named(tmp_path, capsys):
    folder = tmp_path / "cfg.json"
    folder.mkdir()
    _one_line_exit_2(capsys, ["neglabels", "--out", str(tmp_path / "n.txt"), "--model", str(folder),
                              "--pretrained", "none", "--device", "cpu"], "is a folder, not a file")


@pytest.mark.parametrize("make, kind", [(lambda p: (p.mkdir(), str(p))[1], "a folder"),
                                        (lambda p: "/dev/null", "a character device"),
                                        (lambda p: (p.mkdir(), os.path.relpath(p))[1], "a folder")],
                         ids=["folder", "dev-null", "folder-without-slash"])
def test_a_checkpoint_that_is_not_a_file_says_so(tmp_path, capsys, monkeypatch, make, kind):
    monkeypatch.chdir(tmp_path)
    target = make(tmp_path / "ckpts")
    _one_line_exit_2(capsys, ["neglabels", "--out", str(tmp_path / "n.txt"), "--model", "ImmunoTiny-ViT",
                              "--pretrained", target, "--device", "cpu"],
                     f"CLIP checkpoint {target!r} is not a file ({kind})", "pass the checkpoint file")


# ---- D: a full disk while writing a cache ---------------------------------------------------------------
def _full_disk(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def _torch_full_disk(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                       "data/0: file write failed")


@pytest.mark.parametrize("fail", [_full_disk, _torch_full_disk], ids=["ENOSPC", "torch-write-failed"])
def test_a_full_disk_while_writing_the_cache_names_the_file(tmp_path, monkeypatch, fail):
    import torch

    from openood_immuno.core import cache

    monkeypatch.setattr(cache.torch, "save", fail)
    monkeypatch.setattr(cache, "_free_bytes", lambda folder: 0)
    target = tmp_path / "features" / "x.pt"
    with pytest.raises(cache.NoSpaceError, match=rf"no space left on the device of '{re.escape(str(target.parent))}' "
                                                 rf"while writing '{re.escape(str(target))}' \(0 MB free\)"):
        cache.atomic_torch_save(torch.zeros(3), target)
    assert list(target.parent.iterdir()) == []   # no temporary file left
    monkeypatch.setattr(cache, "_free_bytes", lambda folder: 10 << 30)
    if fail is _torch_full_disk:  # plenty of space: torch's error is not mistaken for a full disk
        with pytest.raises(RuntimeError, match="PytorchStreamWriter"):
            cache.atomic_torch_save(torch.zeros(3), target)


def test_a_full_disk_while_writing_the_cache_through_the_cli(small_root, tmp_path, monkeypatch, capsys):
    from openood_immuno.core import cache

    monkeypatch.setenv("OPENOOD_IMMUNO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache.torch, "save", _full_disk)
    line = _one_line_exit_2(capsys, _eval_argv(small_root, tmp_path / "out"),
                            f"no space left on the device of '{tmp_path / 'cache'}", "while writing",
                            "free some space or write elsewhere", "OPENOOD_IMMUNO_CACHE")
    assert "PytorchStreamWriter" not in line and "inline_container" not in line


# ---- D: yml syntax errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, line_col, problem", [
    ("postprocessor:\n  name: mcm\n  postprocessor_args: {T: 1\n", ":4:1:", "expected ',' or '}'"),
    ("postprocessor:\n  name: mcm\n   APS_mode: false\n", ":3:12:", "mapping values are not allowed here"),
    ("postprocessor:\n\tname: mcm\n", ":2:1:", "found character '\\t' that cannot start any token"),
], ids=["unclosed-flow", "bad-indent", "tab"])
def test_a_yml_syntax_error_names_file_and_line(tmp_path, capsys, text, line_col, problem):
    from openood_immuno.core.ymlconfig import load_yml

    bad = tmp_path / "run.yml"
    bad.write_text(text)
    with pytest.raises(ValueError) as err:
        load_yml(bad)
    assert f"{bad}{line_col} config is not valid YAML" in str(err.value) and problem in str(err.value)
    assert "\n" not in str(err.value)
    # the openood-main route checks every --config file before OpenOOD is imported
    _one_line_exit_2(capsys, ["openood-main", "--config", str(bad)], f"{bad}{line_col} --config file is "
                                                                     "not valid YAML", problem)


# ---- D: endpoint URLs (IPv6, user:password) and the answer size cap ------------------------------------------
@pytest.mark.parametrize("text, name, url", [
    ("openai:m1@http://[::1]:8000/v1", "m1", "http://[::1]:8000/v1"),
    ("openai:http://[::1]/v1/chat/completions", "", "http://[::1]/v1"),
    ("openai:http://user:pa%40ss@gpu-box:8000/v1", "", "http://user:pa%40ss@gpu-box:8000/v1"),
    ("openai:org/m:7b@https://me:secret@[2001:db8::1]:443/v1", "org/m:7b", "https://me:secret@[2001:db8::1]:443/v1"),
])
def test_ipv6_hosts_and_credentials_are_accepted_by_the_spec(text, name, url):
    from openood_immuno.llm.spec import ModelSpec, parse_spec

    assert parse_spec(text, "mllm") == ModelSpec("openai", name, url)


@pytest.mark.parametrize("text", ["openai:http://[::1/v1", "openai:http://host:99999/v1", "openai:http:///v1",
                                  "openai:m@http://[::1/v1"])
def test_broken_urls_are_still_refused(text):
    from openood_immuno.llm.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="an openai: reference needs an http\\(s\\) base URL"):
        parse_spec(text, "mllm")


def _handler():
    from fake_endpoint import QuietJSONHandler

    class Api(QuietJSONHandler):
        def do_GET(self):
            self.server.requests.append(self.headers.get("Authorization"))
            mode = self.server.mode
            if mode == "announce-huge":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(17 << 20))
                self.end_headers()
                self.wfile.write(b'{"data": [')
            elif mode == "stream-big":   # no Content-Length: the body runs until the socket closes
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"data": [' + b'{"id": "m"},' * 2000 + b'{"id": "m"}]}')
            elif mode == "500":
                self.send_json({"error": "x"}, 500)
            else:
                self.send_json({"data": [{"id": "m1"}]})
    return Api


def test_an_ipv6_endpoint_is_reached(monkeypatch):
    import threading

    from fake_endpoint import LoopbackServer

    from openood_immuno.llm.http import OpenAIClient

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)

    class V6(LoopbackServer):
        address_family = socket.AF_INET6

    srv = V6(("::1", 0), _handler())
    srv.stop, srv.requests, srv.mode = threading.Event(), [], "good"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert OpenAIClient(f"http://[::1]:{srv.server_address[1]}/v1", timeout_s=5).models() == ["m1"]
    finally:
        srv.shutdown()
        srv.server_close()


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_printed(monkeypatch):
    import base64

    from fake_endpoint import serving

    from openood_immuno.llm.http import EndpointError, OpenAIClient

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with serving(_handler(), mode="good") as srv:
        port = srv.server_address[1]
        client = OpenAIClient(f"http://alice:s%3Acret@127.0.0.1:{port}/v1", timeout_s=5)
        assert client.models() == ["m1"]
        assert srv.requests[-1] == "Basic " + base64.b64encode(b"alice:s:cret").decode()
        monkeypatch.setenv("OPENAI_API_KEY", "sk-1")   # an API key wins over the URL's credentials
        client.models()
        assert srv.requests[-1] == "Bearer sk-1"
        srv.mode = "500"
        with pytest.raises(EndpointError) as err:
            client.models()
    assert "cret" not in str(err.value) and "alice" not in str(err.value)
    assert f"http://127.0.0.1:{port}/v1/models" in str(err.value)


@pytest.mark.parametrize("mode, cap, needle", [("announce-huge", None, "17825792 bytes announced"),
                                               ("stream-big", 1000, "more than that sent")])
def test_an_answer_over_the_size_cap_is_an_error_not_read_whole(mode, cap, needle):
    from fake_endpoint import base_url, serving

    from openood_immuno.llm.http import MAX_ANSWER_BYTES, EndpointError, request_json

    assert MAX_ANSWER_BYTES == 16 << 20
    with serving(_handler(), mode=mode) as srv:
        kwargs = {"max_bytes": cap} if cap else {}
        with pytest.raises(EndpointError, match=r"the answer from .* is larger than .* MiB") as err:
            request_json(base_url(srv) + "/models", timeout_s=5, **kwargs)
    assert err.value.kind == "bad_answer" and needle in str(err.value)


# ---- D: training that diverges ----------------------------------------------------------------------------
@pytest.mark.parametrize("lr", [1e30, 1e10])
def test_diverging_vaccination_stops_naming_lr_and_caches_nothing(tmp_path, monkeypatch, lr):
    import torch
    import torch.nn.functional as F

    from openood_immuno.cli.errors import one_line
    from openood_immuno.methods.immuno.params import ImmunoDISParams
    from openood_immuno.methods.immuno.vaccination import VaccinationDiverged, load_or_vaccinate

    monkeypatch.setenv("OPENOOD_IMMUNO_CACHE", str(tmp_path / "cache"))
    gen = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(40, 16, generator=gen), dim=1)
    mu = F.normalize(torch.randn(4, 16, generator=gen), dim=1)
    ab = F.normalize(torch.randn(8, 16, generator=gen), dim=1)
    config = ImmunoDISParams(adapter_hidden=8, epochs=3, lr=lr, batch_size=16, weight_decay=1e-4, beta=5.0,
                             hard_k=2, seed=0)
    with pytest.raises(VaccinationDiverged) as err:
        load_or_vaccinate(x, torch.arange(40) % 4, mu, torch.ones(4), ab, torch.arange(8) % 4, config, 0.2,
                          progress=False)
    message = one_line(err.value)
    assert f"lr = {lr:g}" in message and "lower lr" in message and "nothing was cached" in message
    assert "vaccination diverged in epoch" in message and "\n" not in message
    assert not list((tmp_path / "cache" / "immuno_adapters").glob("*.pt"))
    # a sane rate trains and caches as before
    ok = config.replace({"lr": 1e-3})
    load_or_vaccinate(x, torch.arange(40) % 4, mu, torch.ones(4), ab, torch.arange(8) % 4, ok, 0.2, progress=False)
    assert len(list((tmp_path / "cache" / "immuno_adapters").glob("*.pt"))) == 1


# ---- G: --id on a data_root without its lists ---------------------------------------------------------
@pytest.mark.parametrize("command", ["eval", "vaccinate", "falsify", "features"])
def test_id_without_its_lists_names_the_id_option(small_root, tmp_path, capsys, no_model, command):
    argv = {"eval": _eval_argv(small_root, tmp_path / "out", "--id", "cifar10"),
            "features": ["features", "--data-root", str(small_root), "--id", "cifar10", *TINY],
            "vaccinate": ["vaccinate", "--data-root", str(small_root), "--id", "cifar10", *TINY],
            "falsify": ["falsify", "--data-root", str(small_root), "--id", "cifar10", *TINY,
                        "--output-dir", str(tmp_path / "f")]}[command]
    _one_line_exit_2(capsys, argv, "--id cifar10: --data-root", "has no benchmark_imglist/cifar10/ lists",
                     "pass --id imagenet")


# ---- G: said once; --no-progress silences every bar ------------------------------------------------------
def _fake_eval(text):
    def fake(args):
        import logging
        import warnings

        from tqdm import tqdm

        for _ in range(3):   # per list, per seed: the same degraded message again and again
            logging.getLogger("openood_immuno.methods.ants.scorer").error(text)
            warnings.warn(text)
        logging.getLogger("openood_immuno.x").warning("another message")
        for _ in tqdm(range(3), desc="a library's bar", disable=False):   # as OpenOOD's Evaluator does
            pass
        return 0
    return fake


@pytest.mark.parametrize("no_progress", [True, False])
def test_a_degraded_warning_is_said_once_and_no_progress_silences_every_bar(monkeypatch, capsys, no_progress):
    import logging

    import openood_immuno.cli.eval as eval_cli

    monkeypatch.setattr(logging.root, "handlers", [])   # the console handler, as in a real process
    text = "ANTS ants: MLLM openai:m@http://x/v1 unavailable (…). DEGRADED: every score below is the NegLabel score"
    monkeypatch.setattr(eval_cli, "run", _fake_eval(text))
    assert run(["eval", "--data-root", ".", *(["--no-progress"] if no_progress else [])]) == 0
    err = capsys.readouterr().err
    assert err.count("DEGRADED: every score") == 1 and err.count("another message") == 1
    assert ("a library's bar" in err) is not no_progress


def test_silenced_progress_bars_covers_subclasses_and_restores():
    from tqdm import tqdm as std_tqdm
    from tqdm.auto import tqdm as auto_tqdm

    from openood_immuno.core.progress import silenced_progress_bars

    with silenced_progress_bars():
        assert std_tqdm(range(2), disable=False).disable and auto_tqdm(range(2), disable=False).disable
    assert not std_tqdm(range(2), disable=False, file=open(os.devnull, "w")).disable


# ---- G: the console table's status column; report's summary ---------------------------------------------
def test_console_table_shows_the_status_column():
    from openood_immuno.experiments.runner import EvalResult

    row = [50.0, 62.0, 60.0, 61.0, 1.0]
    ok = EvalResult("mcm", {"ninco": row}).format().splitlines()
    assert ok[0].rstrip().endswith("status") and ok[1].rstrip().endswith("ok")
    bad = EvalResult("ants", {"ninco": row}, status={"degraded": True, "degraded_reason": "MLLM down"})
    lines = bad.format().splitlines()
    assert lines[0].startswith("ants [DEGRADED: MLLM down]") and lines[2].rstrip().endswith("DEGRADED")


def test_report_prints_a_short_summary_and_the_paths_it_wrote(tmp_path, capsys):
    from openood_immuno.experiments.results import RunSpec, write_run
    from openood_immuno.experiments.runner import EvalResult

    rows = {k: [50.0, 62.0, 60.0, 61.0, 1.0] for k in ("ssb_hard", "ninco", "nearood", "inaturalist",
                                                             "textures", "openimage_o", "farood")}
    spec = RunSpec("imagenet", "ViT-B-16", "openai", "ViT-B-16|tag:openai", "/data", {"id_test": {"sha256": "0"}},
                   "mcm", {}, "openood")
    write_run(str(tmp_path / "res"), spec, EvalResult("mcm", rows))
    assert main(["report", str(tmp_path / "res"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "## Our runs" not in out and "| run |" not in out   # not the whole report.md
    assert "1 OpenOOD-benchmark run(s) (near / far AUROC):" in out and "mcm: 62.00 / 62.00" in out
    assert f"report: {tmp_path / 'rep' / 'report.md'}" in out and f"leaderboard: {tmp_path / 'rep'}" in out
    assert "plots: none" in out and len(out.splitlines()) < 10
    assert main(["report", str(tmp_path / "res"), "--out", str(tmp_path / "rep"), "--print"]) == 0
    assert "## Our runs" in capsys.readouterr().out


def test_mining_sizes_are_checked_when_read(small_root, tmp_path, capsys, no_model):
    argv = _eval_argv(small_root, tmp_path / "out", "--pp-arg", "ants.mllm=none", "--pp-arg", "ants.corpus_limit=2000")
    argv[argv.index("mcm")] = "ants"
    _one_line_exit_2(capsys, argv, "n_neg_labels (10000) exceeds corpus_limit (2000)")
    argv[argv.index("ants.corpus_limit=2000")] = "ants.n_groups=20000"
    _one_line_exit_2(capsys, argv, "n_groups (20000) exceeds n_neg_labels (10000)")


# ---- G: plots that say what they show ----------------------------------------------------------------------
def test_falsification_plot_shows_paired_deltas_around_a_zero_line():
    import matplotlib.pyplot as plt

    from openood_immuno.experiments.falsification import DEFAULT_VARIANTS, FalsificationResult
    from openood_immuno.experiments.falsification_report import PLOTTED, delta_panels, falsification_figure

    base = {m: 80.0 for m in PLOTTED}
    per_seed = {v.label: {s: dict(base) for s in (0, 1)} for v in DEFAULT_VARIANTS}
    per_seed["immuno_no_antibodies"][0]["AUROC_near"] = 79.6   # a 0.4-point difference
    per_seed["immuno_no_antibodies"][1]["AUROC_near"] = 79.6
    result = FalsificationResult(DEFAULT_VARIANTS, (0, 1), per_seed)
    panel = delta_panels(result)["AUROC_near"]
    assert panel["reference"] == (80.0, 0.0)
    assert panel["deltas"][0][0] == "immuno_no_antibodies" and panel["deltas"][0][1] == pytest.approx(-0.4)
    fig = falsification_figure(result)
    ax = fig.axes[list(delta_panels(result)).index("AUROC_near")]
    assert not ax.patches                                             # no bars from 0
    assert any(list(line.get_ydata()) == [0, 0] for line in ax.lines)   # the zero line
    low, high = ax.get_ylim()
    assert low < -0.4 < 0 < high and high - low < 5                   # the 0.4 point fills the panel
    assert any(t.get_text() == "-0.40" for t in ax.texts) and "immuno = 80.00" in ax.get_title()
    plt.close(fig)


def _captured_figures(monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    return figures, real_close


def test_histograms_are_outlines_and_the_evt_plot_says_when_every_class_is_pooled(tmp_path, monkeypatch):
    import json

    import numpy as np

    from openood_immuno.experiments.plots import plot_run

    folder = tmp_path / "run"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shift in (("id", 1.0), ("ninco", 0.0), ("textures", -0.5)):
        np.savez(folder / f"scores_{name}.npz", conf=rng.normal(shift, 1, 50), label=np.zeros(50),
                 pred=np.zeros(50))
    np.savez(folder / "artifacts.npz", evt_threshold=np.full(10, 0.3), evt_pooled=np.ones(10, bool))
    meta = {"files": ["scores_id.npz", "scores_ninco.npz", "scores_textures.npz", "artifacts.npz"],
            "pp_args": {"evt_min_samples": 5}}
    (folder / "run.json").write_text(json.dumps(meta))
    figures, real_close = _captured_figures(monkeypatch)
    written = plot_run({"folder": folder, "meta": meta, "name": "immuno", "protocol": "openood"}, tmp_path)
    assert [p.name for p in written] == ["run_roc_hist.png", "run_evt_thresholds.png"]
    hist_ax = figures[0].axes[1]
    assert hist_ax.patches and not any(p.get_fill() for p in hist_ax.patches)   # outlines only
    evt_text = " ".join(t.get_text() for t in figures[1].axes[0].texts)
    assert "every one of the 10 classes fell back to the pooled Weibull fit" in evt_text
    assert "fewer than 5 calibration scores" in evt_text
    for fig in figures:
        real_close(fig)


# ---- G: docs and help say what the code does ----------------------------------------------------------------
def test_readme_and_openood_doc_agree_on_acc():
    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text().split())
    openood_doc = " ".join((root / "docs" / "openood.md").read_text().split())
    definition = "ID top-1 accuracy of the postprocessor's own predictions"
    assert definition in readme and definition in openood_doc
    assert "that of the net's zero-shot classifier" not in openood_doc


def test_eval_help_names_the_real_output_layout(small_root, tmp_path, capsys):
    from openood_immuno.experiments.results import RunSpec

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "OUTPUT_DIR/<id>_<model>_<weights>/<postprocessor>-<key>/" in text
    assert "<postprocessor>_stream-<key>/" in text and "run.json" in text and "scores_<set>.npz" in text
    spec = RunSpec("imagenet", "ViT-B-16", "openai", "x", "/d", {}, "mcm", {}, "stream")
    folder = spec.folder("OUT")
    assert folder.parent.name == "imagenet_ViT-B-16_openai" and folder.name.startswith("mcm_stream-")


# ---- G: a net that is not CLIP -----------------------------------------------------------------------------
class _ResNetLike:
    """What OpenOOD passes with network.name: resnet50: a classifier without CLIP's text side."""

    def eval(self):
        return self

    def __call__(self, x, return_feature=False):
        raise AssertionError("never called")


@pytest.mark.parametrize("name", ["mcm", "neglabel", "ants", "immuno_zeroshot", "immuno"])
def test_a_non_clip_net_is_one_line_naming_build_clip_net(name):
    import torch

    from openood_immuno.cli.errors import one_line
    from openood_immuno.openood.registry import build_postprocessor

    pp = build_postprocessor(name, "imagenet", **({"mllm": "none"} if name == "ants" else {}))
    net = _ResNetLike()
    calls = [lambda: pp.fit(net, {}), lambda: pp.setup(net, {}, {})]
    for call in calls:
        with pytest.raises(TypeError) as err:
            call()
        line = one_line(err.value)
        assert line.startswith(f"postprocessor '{name}' needs a CLIP net built by openood_immuno.build_clip_net(")
        assert "network.name: clip" in line and "_ResNetLike without encode_text, class_names, identity" in line
        assert "\n" not in line and " in base.py" not in line
    pp.net = object()   # as if fitted: the per-batch and loader paths check the net they are given
    for call in (lambda: pp.postprocess(net, torch.zeros(1, 3, 8, 8)), lambda: pp.inference(net, None)):
        with pytest.raises(ValueError, match="needs a CLIP net built by openood_immuno.build_clip_net"):
            call()


def test_the_tensor_decode_path_refuses_a_fifo_too(tmp_path):
    from openood_immuno.data.decode import read_bytes

    fifo = _fifo(tmp_path / "pipe.jpg")
    signal.alarm(20)
    try:
        with pytest.raises(ValueError, match="is a FIFO"):
            read_bytes(str(fifo), "l.txt")
    finally:
        signal.alarm(0)
