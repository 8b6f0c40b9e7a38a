"""Bad inputs at every place they can enter, and same-seed determinism (docs/hardening.md).

Each test backs one or more rows of the table in docs/hardening.md; rows already proven by
another test file are referenced there, not repeated here.
"""
import builtins
import json
import logging
import os
import socket
import sys
import threading
import time
import types
import warnings
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from fake_endpoint import QuietJSONHandler
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

import openood_immuno
from openood_immuno import build_clip_net, build_postprocessor
from openood_immuno.core import cache as cache_mod
from openood_immuno.core.cache import cache_dir
from openood_immuno.cli import main
from openood_immuno.cli.args import UsageError
from openood_immuno.core.ymlconfig import load_postprocessor_config
from openood_immuno.data.lists import ImglistDataset, make_loader
from openood_immuno.data.benchmarks import ListSpec
from openood_immuno.data.features import FeatureSet, extract_features
from openood_immuno.methods.immuno.vaccination import load_or_vaccinate
from openood_immuno.methods.immuno.antibodies import Antibody, AntibodyBank, BankError
from openood_immuno.methods.immuno.generation import AntibodyGenerator, Generated, GeneratorUnavailable
from openood_immuno.methods.immuno.generators import build_bank, id_classes
from openood_immuno.methods.immuno.params import ImmunoParams
from openood_immuno.methods.neglabel import negative_labels
from openood_immuno.methods.neglabel import select as select_mod
from openood_immuno.experiments.openood_engine import evaluate_with_openood
from openood_immuno.postprocessors.registry import postprocessor_class
from openood_immuno.data.benchmarks import BenchmarkLists
from openood_immuno.experiments.runner import FeatureStore, evaluate

TINY = ["--model", "ImmunoTiny-ViT", "--pretrained", "none", "--device", "cpu"]
PROV = {"generator": "test", "model": "none", "prompts": {}, "seed": 0, "params": {}}
SPEC = ListSpec("probe", "imgs/", "benchmark_imglist/probe.txt")
NEGLABEL_SMALL = dict(n_neg_labels=120, corpus_limit=600, n_groups=12)
ANTS_SMALL = dict(mllm="scripted", **NEGLABEL_SMALL, group_size=10, init_threshold=0.9,
                  mine_min_cache=8, ens_max_updates=3, vsnl_start_batch=2, vsnl_interval=2,
                  vsnl_top_k=3)
pytestmark = pytest.mark.filterwarnings("ignore:ANTS is using the 'scripted' MLLM",
                                        "ignore:.*with RANDOM weights")


# ---- helpers -------------------------------------------------------------------------------
def image_root(tmp_path, modes=("RGB", "RGB", "RGB"), lists=None) -> Path:
    """A data_root with one image per mode under imgs/ and the list benchmark_imglist/probe.txt
    (``lists`` = extra ``{file name: text}`` list files)."""
    (tmp_path / "imgs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "benchmark_imglist").mkdir(exist_ok=True)
    lines = []
    for i, mode in enumerate(modes):
        name = f"{i}_{mode}.{'png' if mode in ('P', 'RGBA') else 'jpg'}"
        Image.new(mode, (40 + 8 * i, 32), (30 * i,) * len(mode) if mode != "P" else 7 * i).save(
            tmp_path / "imgs" / name)
        lines.append(f"{name} {i}\n")
    (tmp_path / "benchmark_imglist" / "probe.txt").write_text("".join(lines))
    for name, text in (lists or {}).items():
        (tmp_path / "benchmark_imglist" / name).write_text(text)
    return tmp_path


class NaNNet:
    """``tiny_net`` whose image encoder returns NaN in every second row (an fp16 overflow)."""

    def __init__(self, net):
        self.net, self.identity = net, net.identity + "|nan-probe"
        self.class_names, self.class_text_features = net.class_names, net.class_text_features
        self.embed_dim, self.device, self.preprocess = net.embed_dim, net.device, net.preprocess
        self.training = False

    def encode_text(self, texts, templates=None):
        return self.net.encode_text(texts, templates)

    def encode_image(self, x):
        feats = self.net.encode_image(x)
        feats[1::2, 0] = float("nan")
        return feats

    def eval(self):
        return self

    def train(self, mode=True):
        return self


def half_written_torch_save(obj, path):
    """A crash inside ``torch.save``: half a file on disk, then the process is interrupted."""
    with open(path, "wb") as fh:
        fh.write(b"PK\x03\x04half")
    raise KeyboardInterrupt


def half_written_open(path, mode="r", **kwargs):
    """``open`` whose first ``write`` stores half the text, then the process is interrupted."""
    fh = builtins.open(path, mode, **kwargs)

    class Crashing:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            fh.close()

        def write(self, text):
            fh.write(text[: len(text) // 2])
            fh.flush()
            raise KeyboardInterrupt

    return Crashing()


def listing(folder) -> set:
    return set(os.listdir(folder))


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ants(net=None, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ANTS is using the 'scripted' MLLM")
        pp = build_postprocessor("ants", **{**ANTS_SMALL, **kw})
        return pp.fit(net, {}) if net is not None else pp


def unit(n, d=64, seed=0):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.fixture(scope="module")
def net32(tmp_path_factory):
    """An ImmunoTiny-ViT variant with 32-d embeddings: 'another CLIP model'."""
    shipped = Path(openood_immuno.__file__).parent / "models" / "model_configs" / "ImmunoTiny-ViT.json"
    config = json.loads(shipped.read_text())
    path = tmp_path_factory.mktemp("models") / "ImmunoTiny32.json"
    path.write_text(json.dumps({**config, "embed_dim": 32}))
    return build_clip_net(str(path), "none", ["cat", "dog"])


@pytest.fixture(scope="module")
def glass_bank(tmp_path_factory, tiny_net):
    """A complete small bank for the 1000 ImageNet classes: one contextual antibody each."""
    bank = AntibodyBank(tiny_net.class_names, PROV)
    for name in dict.fromkeys(tiny_net.class_names):
        bank.add_class(name, [Antibody(f"a {name} made of glass", "contextual", "test")], {})
    return str(bank.save(tmp_path_factory.mktemp("banks") / "glass.json"))


# ---- same seed, same results -----------------------------------------------------------------
ANTS_MINIBENCH = dict(mllm="scripted", n_neg_labels=500, corpus_limit=1500, n_groups=10, group_size=20,
                      mine_min_cache=20, vsnl_start_batch=2, vsnl_interval=2, vsnl_top_k=5)
RUNS = {
    "mcm": ({}, "openood", (0,)),
    "neglabel": ({"n_neg_labels": 300, "corpus_limit": 1200, "n_groups": 10}, "openood", (0,)),
    "immuno": ({"epochs": 2}, "openood", (0,)),
    "ants": (ANTS_MINIBENCH, "stream", (0, 1)),
}


@pytest.fixture(scope="module")
def minibench_store(tiny_net, minibench):
    return FeatureStore(tiny_net, str(minibench), BenchmarkLists(), batch_size=64, num_workers=0,
                        progress=False)


@pytest.mark.parametrize("name", list(RUNS))
def test_same_seed_gives_identical_tables(name, minibench_store, tmp_path, monkeypatch):
    """Two runs of the builtin runner on minibench; every seeded artefact (mined negative labels,
    WordNet antibody bank, trained adapter, ANTS banks) is rebuilt from scratch in each run:
    only image and text features (functions of the frozen backbone) are shared."""
    overrides, protocol, seeds = RUNS[name]
    shared = {kind: cache_dir(kind) for kind in ("features", "text")}
    results = []
    for run in range(2):
        root = tmp_path / f"cache{run}"
        root.mkdir()
        for kind, folder in shared.items():
            (root / kind).symlink_to(folder, target_is_directory=True)
        monkeypatch.setenv("OPENOOD_IMMUNO_CACHE", str(root))
        pp = build_postprocessor(name, **overrides)
        results.append(evaluate(pp, minibench_store, protocol, seeds, batch_size=64))
        if name == "immuno":
            assert pp.scorer.vaccination["cached"] is False   # trained in both runs
    first, second = results
    assert first.rows == second.rows and first.std == second.std
    assert first.scores.keys() == second.scores.keys()
    for key, arrays in first.scores.items():
        assert all(np.array_equal(a, b) for a, b in zip(arrays, second.scores[key]))
    if name == "ants":
        costs = [r.status.pop("mllm_cost") for r in results]
        assert first.status["ens_bank"] > 0 and first.status == second.status
        assert [{k: v for k, v in c.items() if k != "seconds"} for c in costs] == [
            {k: v for k, v in costs[0].items() if k != "seconds"}] * 2


# ---- checkpoints and models --------------------------------------------------------------------
def test_checkpoint_of_another_model_names_the_mismatch(net32, tmp_path):
    other = tmp_path / "other_model.pt"
    torch.save(net32.clip.state_dict(), other)
    with pytest.raises(RuntimeError, match=r"(?s)could not load CLIP checkpoint '.*other_model\.pt' "
                                           r"into ImmunoTiny-ViT: .*size mismatch.*complete "
                                           r"ImmunoTiny-ViT checkpoint"):
        build_clip_net("ImmunoTiny-ViT", str(other), ["cat"])
    with pytest.raises(FileNotFoundError, match="model config .*missing.json' does not exist"):
        build_clip_net(str(tmp_path / "missing.json"), "none", ["cat"])


def test_cli_names_the_fix_for_model_checkpoint_postprocessor_and_data_root(minibench, tmp_path):
    base = ["eval", "--data-root", str(minibench), "--engine", "builtin", "--num-workers", "0",
            "--output-dir", str(tmp_path)]
    with pytest.raises(ValueError, match="unknown CLIP model 'ViT-Nope'.*open_clip.list_models"):
        main(base + ["--model", "ViT-Nope", "--pretrained", "openai"])
    with pytest.raises(FileNotFoundError, match="CLIP checkpoint '.*gone.pt' does not exist"):
        main(base + ["--model", "ImmunoTiny-ViT", "--pretrained", str(tmp_path / "gone.pt")])
    with pytest.raises(UsageError, match=r"--postprocessors: unknown postprocessor 'mcn' \(did you mean "
                                         r"'mcm'\?\); available: adaneg, ants, .*mcm"):
        main(base + TINY + ["--postprocessors", "mcn"])
    with pytest.raises(UsageError, match="--data-root '.*nowhere' does not exist: pass OpenOOD's data_root"):
        main(["eval", "--data-root", str(tmp_path / "nowhere"), *TINY, "--engine", "builtin",
              "--num-workers", "0", "--output-dir", str(tmp_path)])


# ---- images and lists -------------------------------------------------------------------------
def test_images_of_every_mode_are_encoded_and_a_missing_file_is_named(tiny_net, tmp_path):
    root = image_root(tmp_path, ("L", "CMYK", "P", "RGBA", "RGB"),
                      {"gone.txt": "0_L.jpg 0\nnot_there.jpg 1\n"})
    store = FeatureStore(tiny_net, str(root), BenchmarkLists(), num_workers=0, progress=False)
    fs = store.get("probe", SPEC)
    assert fs.features.shape == (5, 64) and torch.isfinite(fs.features).all()
    with pytest.raises(FileNotFoundError, match=r"not_there\.jpg' \(listed in .*gone\.txt\) does not "
                                                r"exist: fix the list or data_root"):
        store.get("gone", ListSpec("gone", "imgs/", "benchmark_imglist/gone.txt"))


def test_runner_rejects_empty_lists_and_labels_out_of_range(tiny_net, tmp_path):
    root = image_root(tmp_path, lists={"empty.txt": "\n", "range.txt": "0_RGB.jpg 3\n1_RGB.jpg 1000\n"})
    store = FeatureStore(tiny_net, str(root), BenchmarkLists(), num_workers=0, progress=False)
    with pytest.raises(ValueError, match="empty.txt' is empty: it must list at least one image"):
        store.get("empty", ListSpec("empty", "imgs/", "benchmark_imglist/empty.txt"))
    with pytest.raises(ValueError, match=r"range\.txt:2: label 1000 out of range \[-1, 1000\)"):
        store.get("range", ListSpec("range", "imgs/", "benchmark_imglist/range.txt"))


def test_empty_list_through_an_openood_loader(tiny_net):
    pp = build_postprocessor("mcm").fit(tiny_net, {})
    with pytest.raises(ValueError, match="no images"):
        pp.inference(tiny_net, DataLoader([], batch_size=4), progress=False)


def test_ants_skips_unreadable_mined_images_and_describes_grayscale_and_cmyk(tiny_net, tmp_path, caplog):
    root = image_root(tmp_path, ("L", "CMYK", "RGB", "RGB"))
    paths = sorted(str(p) for p in (root / "imgs").iterdir())
    (root / "imgs" / "2_RGB.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")          # corrupt
    data = (root / "imgs" / "3_RGB.jpg").read_bytes()
    (root / "imgs" / "3_RGB.jpg").write_bytes(data[: len(data) // 2])                # truncated
    pp = ants(tiny_net, mine_min_cache=0, init_threshold=1.0)
    seen = []
    pp.scorer.backend.script = lambda prompt, image: seen.append(image.mode) or "a glass lantern"
    with caplog.at_level(logging.WARNING):
        pred, conf = pp.score_features(unit(4), paths)
    assert conf.shape == (4,) and torch.isfinite(conf).all()
    assert seen == ["RGB", "RGB"] and pp.status()["ens_bank"] == 1
    assert "2 of 4 mined images could not be read and are skipped" in caplog.text


# ---- features: dimension, NaN/inf --------------------------------------------------------------
def id_features(n=40):
    """ID train/val features of n images, one class each (the Python API's ``id_features``)."""
    return {s: FeatureSet(s, unit(n, seed=i), torch.arange(n), [f"{s}/{j}.jpg" for j in range(n)])
            for i, s in enumerate(("train", "val"))}


@pytest.mark.parametrize("name", ["mcm", "neglabel", "ants", "immuno_zeroshot", "immuno"])
def test_features_of_another_model_per_batch(name, tiny_net, glass_bank):
    immuno = {"antibody_bank": glass_bank, "delta_low": -1.0, "delta_high": 1.0, "epochs": 1}
    extra = {"neglabel": NEGLABEL_SMALL, "ants": {**ANTS_SMALL, "mllm": "none"}, "immuno": immuno,
             "immuno_zeroshot": {k: v for k, v in immuno.items() if k != "epochs"}}
    pp = build_postprocessor(name, **extra.get(name, {})).fit(tiny_net, id_features())
    with pytest.raises(ValueError, match=r"feature dimension mismatch: images (512|\(3, 512\))"):
        pp.score_features(unit(3, 512))


def test_features_of_another_model_through_openood_inference(tiny_net, net32, tmp_path):
    pp = build_postprocessor("mcm").fit(tiny_net, {})
    loader = make_loader(ImglistDataset(str(image_root(tmp_path)), SPEC, net32.preprocess), 4, 0)
    with pytest.raises(ValueError, match=r"features of 'probe' have shape \(3, 32\) but the "
                                         r"embedding dimension is 64: .*same CLIP model"):
        pp.inference(net32, loader, progress=False)


def test_nan_features_through_the_runner_and_openood_inference(tiny_net, tmp_path):
    root = image_root(tmp_path)
    nan_net = NaNNet(tiny_net)
    lists = BenchmarkLists(id={"train": SPEC, "val": SPEC, "test": SPEC}, ood_val=SPEC,
                           near={"near": SPEC}, far={"far": SPEC})
    store = FeatureStore(nan_net, str(root), lists, num_workers=0, progress=False)
    with pytest.raises(ValueError, match="1 of 3 features of 'test_imagenet' contain NaN or inf: .*clear "
                                         "the feature cache"):
        evaluate(build_postprocessor("mcm"), store)
    pp = build_postprocessor("mcm").fit(nan_net, {})
    loader = make_loader(ImglistDataset(str(root), SPEC, tiny_net.preprocess), 4, 0)
    with pytest.raises(ValueError, match="1 of 3 features of 'probe' contain NaN or inf"):
        pp.inference(nan_net, loader, progress=False)


def test_nan_features_on_the_ants_per_batch_postprocess_path(tiny_net):
    nan_net = NaNNet(tiny_net)
    pp = ants(nan_net)
    with pytest.raises(ValueError, match="1 of 2 image features of the batch contain NaN or inf"):
        pp.postprocess(nan_net, torch.zeros(2, 3, 224, 224))


def test_nan_features_on_the_per_batch_postprocess_path(tiny_net):
    nan_net = NaNNet(tiny_net)
    pp = build_postprocessor("mcm").fit(nan_net, {})
    with pytest.raises(ValueError, match="1 of 2 image features of the batch contain NaN or inf"):
        pp.postprocess(nan_net, torch.zeros(2, 3, 224, 224))


@pytest.mark.parametrize("split, broken, message", [
    ("train", "nan", r"1 of 40 ID train features contain NaN or inf: .*clear the feature cache"),
    ("val", "nan", r"1 of 40 ID val features contain NaN or inf"),
    ("train", "dim", r"ID train features have shape \(40, 512\) but the embedding dimension is "
                     r"64: features and text must come from the same CLIP model"),
    ("val", "labels", r"ID val labels must lie in \[0, 1000\) \(one per ID class\), got \[990, 1029\]"),
], ids=["nan train", "inf val", "dim train", "labels val"])
def test_immuno_fit_rejects_broken_id_features(split, broken, message, tiny_net, glass_bank):
    sets = id_features()
    fs = sets[split]
    if broken == "nan":
        fs.features[3, 5] = float("nan") if split == "train" else float("inf")
    elif broken == "dim":
        fs.features = unit(40, 512)
    else:
        fs.labels = fs.labels + 990
    pp = build_postprocessor("immuno", antibody_bank=glass_bank, delta_low=-1.0, delta_high=1.0, epochs=1)
    with pytest.raises(ValueError, match=message):
        pp.fit(tiny_net, sets)


# ---- antibody banks ---------------------------------------------------------------------------
def _bank_file(tmp_path, tiny_net, case):
    path = tmp_path / "bank.json"
    names = tiny_net.class_names
    if case == "missing":
        return path
    if case == "not json":
        path.write_text("{not json")
    elif case == "wrong format":
        path.write_text(json.dumps({"format": "something else"}))
    elif case == "malformed":
        path.write_text(json.dumps({"format": "openood-immuno/antibody-bank", "format_version": 1,
                                    "class_names": names, "provenance": PROV,
                                    "classes": {"tench": [{"text": "carp", "kind": "lookalike",
                                                           "source": ""}]}}))
    else:
        bank = AntibodyBank(["tench", "goldfish"] if case == "other classes" else names, PROV)
        filled = {"empty": list(dict.fromkeys(names)), "other classes": ["tench", "goldfish"],
                  "incomplete": names[:10]}[case]
        for name in filled:
            bank.add_class(name, [] if case == "empty" else [Antibody(f"not a {name}", "near_ood", "t")], {})
        bank.save(path)
    return path


BANK_CASES = {
    "missing": r"antibody bank '.*bank\.json' does not exist; build one with `openood-immuno antibodies",
    "not json": r"antibody bank '.*bank\.json' is not valid JSON",
    "wrong format": r"is not an openood-immuno antibody bank",
    "malformed": r"antibody 0 of class 'tench': antibody kind must be one of \('near_ood', 'contextual'\)",
    "empty": r"antibody bank '.*bank\.json' holds no antibody for any of the ID classes",
    "other classes": r"antibody bank '.*bank\.json' was built for another class set: 996 of the 998 ID "
                     r"classes are missing",
    "incomplete": r"antibody bank '.*bank\.json' is incomplete: 988 of its 998 classes have no entry "
                  r"yet .*resume it by re-running the same `openood-immuno antibodies` command",
}


@pytest.mark.parametrize("case", list(BANK_CASES))
def test_antibody_bank_argument_of_the_postprocessor(case, tiny_net, tmp_path):
    pp = build_postprocessor("immuno_zeroshot", antibody_bank=str(_bank_file(tmp_path, tiny_net, case)))
    with pytest.raises(BankError, match=BANK_CASES[case]):
        pp.fit(tiny_net, {})


@pytest.mark.parametrize("case", ["missing", "other classes"])
@pytest.mark.parametrize("command", ["vaccinate", "eval"])
def test_antibody_bank_through_the_cli(command, case, tiny_net, minibench, tmp_path):
    bank = str(_bank_file(tmp_path, tiny_net, case))
    argv = {"vaccinate": ["--bank", bank, "--pp-arg", "immuno.epochs=1"],
            "eval": ["--postprocessors", "immuno_zeroshot", "--engine", "builtin", "--pp-arg",
                     f"immuno_zeroshot.antibody_bank={bank}", "--output-dir", str(tmp_path)]}[command]
    with pytest.raises(BankError, match=BANK_CASES[case]):
        main([command, "--data-root", str(minibench), *TINY, "--num-workers", "0", *argv])


def test_antibodies_cli_refuses_an_out_file_of_another_class_set(tmp_path):
    out = tmp_path / "bank.json"
    AntibodyBank(["a", "b"], PROV).save(out)
    classes = tmp_path / "classes.txt"
    classes.write_text("tench\ngoldfish\n")
    with pytest.raises(BankError, match=r"holds a bank for another class set \(2 classes\): pass a new "
                                        "--out file"):
        main(["antibodies", "--id", str(classes), "--out", str(out), "--no-filter-summary",
              "--no-progress", *TINY])


# ---- LLM / MLLM endpoints -----------------------------------------------------------------------
class _Chat(QuietJSONHandler):
    """An OpenAI-compatible endpoint that lists a model, then misbehaves as ``server.mode`` says."""

    def do_GET(self):
        self.send_json({"data": [{"id": "tiny"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        mode = self.server.mode
        if mode == "slow":
            time.sleep(1.0)
        body = {"slow": {"choices": [{"message": {"content": "a red lantern"}}]},
                "no choices": {"object": "error", "detail": "overloaded"},
                "garbage": {"choices": [{"message": {"content": "@@@ ### !!!\n~~~ 123"}}]}}.get(mode)
        self.send_body(json.dumps(body).encode() if body else b"<html>502 Bad Gateway</html>")


class _ChatServer(ThreadingHTTPServer):
    request_queue_size = 64   # a batch's requests arrive at once: none may wait for a SYN retry


@pytest.fixture
def chat_server():
    srv = _ChatServer(("127.0.0.1", 0), _Chat)
    srv.mode = "slow"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """64 unit features with a real image file each, in stream order (4 batches of 16)."""
    folder = tmp_path_factory.mktemp("stream")
    paths = []
    for i in range(64):
        Image.new("RGB", (24, 24), ((37 * i) % 256, (91 * i) % 256, 90)).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return unit(64, seed=1), paths


def run_stream(pp, stream):
    feats, paths = stream
    return torch.cat([pp.score_features(feats[i:i + 16], paths[i:i + 16])[1] for i in range(0, 64, 16)])


@pytest.mark.parametrize("mode, logged", [("slow", "request failed (timeout: no answer within 0.3 s"),
                                          ("no choices", "request failed (bad_answer: answer without choices"),
                                          ("not json", "request failed (bad_answer: not a JSON answer"),
                                          ("garbage", "gave no usable description")],
                         ids=["slow", "no choices", "not json", "garbage"])
def test_ants_mllm_endpoint_slow_or_answering_garbage_never_stops_the_stream(
        mode, logged, chat_server, tiny_net, stream, caplog):
    chat_server.mode = mode
    url = f"http://127.0.0.1:{chat_server.server_address[1]}/v1"
    pp = ants(tiny_net, mllm=f"openai:tiny@{url}", mllm_timeout_s=0.3, ens_max_updates=1)
    with caplog.at_level(logging.WARNING):
        conf = run_stream(pp, stream)
    status = pp.status()
    assert logged in caplog.text and status["ens_updates"] == 1
    assert status["ens_bank"] == 0 and status["vsnl_bank"] == 0
    cost = status["mllm_cost"]
    assert cost["failures"] == cost["requests"] > 0 and status["degraded"]   # garbage is a failed request
    assert cost["unusable"] == (cost["requests"] if mode == "garbage" else 0)
    note = f"MLLM: {cost['failures']} of {cost['requests']} requests failed"
    if mode == "garbage":
        note += f" ({cost['unusable']} answered no usable text)"
    assert status["degraded_reason"].startswith(note + "; ENS: 0 usable of ")
    assert torch.equal(conf, run_stream(ants(tiny_net, mllm="none"), stream))   # NegLabel scores


def test_ants_mllm_endpoint_down_degrades_loudly_or_fails_when_strict(tiny_net, stream, caplog):
    spec = f"openai:tiny@http://127.0.0.1:{dead_port()}/v1"
    with caplog.at_level(logging.ERROR), pytest.warns(UserWarning, match="DEGRADED: every score below is "
                                                                         "the NegLabel score"):
        pp = ants(tiny_net, mllm=spec, mllm_timeout_s=2)
    assert "is not reachable" in caplog.text and pp.status()["degraded"] is True
    assert torch.equal(run_stream(pp, stream), run_stream(ants(tiny_net, mllm="none"), stream))
    with pytest.raises(RuntimeError, match="OpenAI-compatible endpoint .* is not reachable .*check the URL"):
        ants(tiny_net, mllm=spec, mllm_timeout_s=2, mllm_strict=True)


def test_antibodies_cli_with_the_llm_endpoint_down(tmp_path):
    with pytest.raises(GeneratorUnavailable, match="is unreachable .*start the server"):
        main(["antibodies", "--generator", f"openai:http://127.0.0.1:{dead_port()}/v1",
              "--out", str(tmp_path / "b.json"), "--no-progress", *TINY])
    assert not (tmp_path / "b.json").exists()


# ---- interrupted cache writes ------------------------------------------------------------------
def test_interrupted_feature_cache_write(tiny_net, tmp_path, monkeypatch, caplog):
    loader = make_loader(ImglistDataset(str(image_root(tmp_path)), SPEC, tiny_net.preprocess), 4, 0)
    folder, before = cache_dir("features"), listing(cache_dir("features"))
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(torch, "save", half_written_torch_save)
        extract_features(tiny_net, loader, progress=False)
    assert listing(folder) == before                  # no half-written file, no temporary file
    fresh = extract_features(tiny_net, loader, progress=False)
    assert len(listing(folder) - before) == 1
    with caplog.at_level(logging.INFO, logger="openood_immuno.data.features"):
        cached = extract_features(tiny_net, loader, progress=False)
    assert "from cache" in caplog.text and torch.equal(cached.features, fresh.features)


def test_interrupted_text_cache_write(tiny_net, monkeypatch):
    folder, before = cache_dir("text"), listing(cache_dir("text"))
    texts = ["a hardening probe sentence"]
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(torch, "save", half_written_torch_save)
        tiny_net.encode_text(texts, ())
    assert listing(folder) == before
    feats = tiny_net.encode_text(texts, ())
    (new,) = listing(folder) - before
    assert torch.equal(torch.load(folder / new), feats)


def test_interrupted_adapter_checkpoint_write(monkeypatch):
    z, y = unit(40, 8, seed=17), torch.arange(4).repeat(10)
    args = (z, y, unit(4, 8, seed=18), torch.ones(4), unit(8, 8, seed=19), torch.arange(4).repeat(2),
            ImmunoParams(epochs=2, adapter_hidden=16), 0.0, "hardening-test")
    folder, before = cache_dir("immuno_adapters"), listing(cache_dir("immuno_adapters"))
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(torch, "save", half_written_torch_save)
        load_or_vaccinate(*args, progress=False)
    assert listing(folder) == before
    trained, info = load_or_vaccinate(*args, progress=False)
    loaded, again = load_or_vaccinate(*args, progress=False)
    assert not info["cached"] and again["cached"] and torch.equal(trained(z), loaded(z))


def test_interrupted_antibody_bank_write_keeps_the_previous_file(tmp_path, monkeypatch):
    bank = AntibodyBank(["tench", "goldfish"], PROV)
    bank.add_class("tench", [Antibody("carp", "near_ood", "x")], {})
    path = bank.save(tmp_path / "bank.json")
    saved = bank.digest()
    bank.add_class("goldfish", [Antibody("koi", "near_ood", "x")], {})
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(cache_mod, "open", half_written_open, raising=False)
        bank.save(path)
    assert AntibodyBank.load(path).digest() == saved and listing(tmp_path) == {"bank.json"}


class _Interrupted(AntibodyGenerator):
    """Generates ``not <class>``; Ctrl-C on the class named ``stop_at``."""

    name = "interrupted"

    def __init__(self, stop_at=None):
        super().__init__(1, 0)
        self.stop_at, self.calls = stop_at, []

    def provenance(self):
        return dict(PROV)

    def generate(self, cls):
        if cls.name == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append(cls.name)
        return Generated([Antibody(f"not {cls.name}", "near_ood", "test")])


def test_interrupted_bank_generation_resumes_from_the_last_save(tmp_path):
    out, classes = tmp_path / "bank.json", id_classes(["a", "b", "c", "d"])
    with pytest.raises(KeyboardInterrupt):
        build_bank(_Interrupted(stop_at="c"), classes, out, progress=False, save_every_s=0)
    assert AntibodyBank.load(out).missing() == ["c", "d"]
    generator = _Interrupted()
    bank = build_bank(generator, classes, out, progress=False)
    assert generator.calls == ["c", "d"] and not bank.missing()


def test_interrupted_or_truncated_neglabel_cache_is_never_read(tiny_net, monkeypatch):
    mined = []
    real_mine = select_mod.mine_negative_labels
    monkeypatch.setattr(select_mod, "mine_negative_labels",
                        lambda *a, **k: mined.append(1) or real_mine(*a, **k))
    params = dict(n_labels=60, corpus_limit=300)
    folder, before = cache_dir("neglabel"), listing(cache_dir("neglabel"))
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(cache_mod, "open", half_written_open, raising=False)
        negative_labels(tiny_net, **params)
    assert listing(folder) == before and len(mined) == 1
    labels = negative_labels(tiny_net, **params)
    (new,) = listing(folder) - before
    assert len(mined) == 2 and len(labels) == 60
    lines = (folder / new).read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / new).write_text("".join(lines[:-20]), encoding="utf-8")      # cut at a line end
    again = negative_labels(tiny_net, **params)
    assert len(mined) == 3 and (again.nouns, again.adjectives) == (labels.nouns, labels.adjectives)
    negative_labels(tiny_net, **params)
    assert len(mined) == 3                                                # the rewritten file is read


# ---- OpenOOD absent, incompatible or broken --------------------------------------------------------
def _hide_openood(monkeypatch):
    for name in [n for n in sys.modules if n == "openood" or n.startswith("openood.")] + ["openood"]:
        monkeypatch.setitem(sys.modules, name, None)


def test_openood_absent_for_register_and_the_openood_engine(minibench, tmp_path, monkeypatch):
    _hide_openood(monkeypatch)
    with pytest.raises(ImportError, match="needs OpenOOD, which is not on PyPI: install it with `pip "
                                          "install git\\+https://github.com/Jingkang50/OpenOOD`"):
        openood_immuno.register()
    with pytest.raises(ImportError, match="needs OpenOOD, which is not on PyPI"):
        main(["eval", "--data-root", str(minibench), *TINY, "--engine", "openood", "--num-workers", "0",
              "--output-dir", str(tmp_path)])


def test_incompatible_openood_through_the_openood_engine(tiny_net, minibench, monkeypatch):
    fake = {name: types.ModuleType(name) for name in (
        "openood", "openood.evaluation_api", "openood.evaluation_api.evaluator",
        "openood.evaluation_api.postprocessor", "openood.postprocessors", "openood.postprocessors.utils")}
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    with pytest.raises(RuntimeError, match="incompatible OpenOOD version: openood-immuno needs OpenOOD "
                                           "v1.5, which has openood.evaluation_api.postprocessor"):
        evaluate_with_openood(tiny_net, build_postprocessor("mcm"), str(minibench))


def test_openood_that_fails_to_import_runs_standalone_with_a_warning(monkeypatch, caplog):
    from openood_immuno.postprocessors.base import _openood_base

    class Broken(types.ModuleType):
        """A module whose attributes fail as a binary-incompatible import does."""

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            raise RuntimeError("numpy.dtype size changed, may indicate binary incompatibility")

    monkeypatch.setitem(sys.modules, "openood", types.ModuleType("openood"))
    monkeypatch.setitem(sys.modules, "openood.postprocessors", types.ModuleType("openood.postprocessors"))
    monkeypatch.setitem(sys.modules, "openood.postprocessors.base_postprocessor",
                        Broken("openood.postprocessors.base_postprocessor"))
    with caplog.at_level(logging.WARNING):
        assert _openood_base() is None
    assert "OpenOOD is installed but failed to import (numpy.dtype size changed" in caplog.text
    assert "running standalone" in caplog.text


# ---- config typos ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, typo, valid", [("ants", {"mlm": "none"}, "'mllm'"),
                                               ("ants_vsnl", {"vsnl_topk": 5}, "'vsnl_top_k'"),
                                               ("immuno", {"epoch": 3}, "'epochs'"),
                                               ("immuno_zeroshot", {"epochs": 3}, "'delta_low'")],
                         ids=["ants", "ants_vsnl", "immuno", "immuno_zeroshot"])
def test_config_typo_in_ants_and_immuno_lists_the_valid_names(name, typo, valid):
    with pytest.raises(ValueError, match=rf"postprocessor '{name}': unknown parameter\(s\) "
                                         rf"\['{list(typo)[0]}'\]; valid ones are \[.*{valid}"):
        build_postprocessor(name, **typo)


def test_sweep_typo_in_a_user_config_is_rejected():
    config = load_postprocessor_config("immuno")
    config.postprocessor.postprocessor_sweep = {"lamda_list": [0.5, 1.0]}
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lamda_list'\].*'lambda'.*"
                                         r"\(sweeps as '<name>_list'\)"):
        postprocessor_class(config)(config)


def test_config_typo_through_the_cli(minibench, tmp_path):
    base = ["eval", "--data-root", str(minibench), *TINY, "--engine", "builtin",
            "--output-dir", str(tmp_path)]
    with pytest.raises(ValueError, match=r"postprocessor 'ants': unknown parameter\(s\) \['mlm'\]"):
        main(base + ["--postprocessors", "ants", "--pp-arg", "ants.mlm=none"])
    with pytest.raises(UsageError, match=r"--pp-arg 'ants.mllm=none' names 'ants', which is not among the "
                                         r"postprocessors run here \['mcm'\]"):
        main(base + ["--postprocessors", "mcm", "--pp-arg", "ants.mllm=none"])
    with pytest.raises(ValueError, match=r"postprocessor 'immuno': unknown parameter\(s\) \['epoch'\]"):
        main(["vaccinate", "--data-root", str(minibench), *TINY, "--pp-arg", "immuno.epoch=1"])


def test_config_typo_through_openood_main_py_route():
    pytest.importorskip("openood.pipelines.test_ood_pipeline")
    from openood.pipelines import test_ood_pipeline
    from openood.utils import Config

    openood_immuno.register()
    config = Config(**{"postprocessor": {"name": "immuno", "APS_mode": False,
                                         "postprocessor_args": {"epoch": 1}}})
    with pytest.raises(ValueError, match=r"postprocessor 'immuno': unknown parameter\(s\) \['epoch'\]"):
        test_ood_pipeline.get_postprocessor(config)


@pytest.mark.parametrize("args, message", [
    ({"antibody_source": "noise"}, r"antibody_source must be one of \('bank', 'gaussian_noise', "
                                   r"'random_words'\), got 'noise'"),
    ({"margin": "big"}, r"margin must be a number or 'auto', got 'big'"),
    ({"evt_output": "pdf"}, r"evt_output must be one of \('hazard', 'cdf'\), got 'pdf'"),
], ids=["antibody_source", "margin", "evt_output"])
def test_invalid_immuno_values_name_the_choices(args, message, tiny_net, glass_bank):
    with pytest.raises(ValueError, match=message):   # refused at load, before any fit
        build_postprocessor("immuno", antibody_bank=glass_bank, **args).fit(tiny_net, {})


@pytest.mark.parametrize("name", ["mcm", "neglabel", "immuno_zeroshot"])
def test_scoring_before_fit_says_to_fit(tiny_net, name):
    pp = build_postprocessor(name)
    with pytest.raises(RuntimeError, match="not fitted: call fit"):
        pp.postprocess(tiny_net, torch.zeros(1, 3, 224, 224))


def test_immuno_without_train_or_val_split_names_it(tiny_net):
    with pytest.raises(ValueError, match=r"vaccination needs ID training features \(id_features\['train'\]\)"):
        build_postprocessor("immuno_dis", epochs=1).fit(tiny_net, {})


def test_damaged_cached_wordnet_bank_is_rebuilt(caplog):
    from openood_immuno.methods.immuno.antibody_sources import wordnet_bank

    names = ["tench", "goldfish"]
    first = wordnet_bank(names, 3, 2, 0)
    cached = sorted((Path(os.environ["OPENOOD_IMMUNO_CACHE"]) / "antibodies").glob("wordnet-*.json"),
                    key=os.path.getmtime)[-1]
    cached.write_text("{ damaged")
    with caplog.at_level("WARNING"):
        again = wordnet_bank(names, 3, 2, 0)
    assert "unreadable" in caplog.text and again.digest() == first.digest()
