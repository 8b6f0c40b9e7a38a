"""Run folders keyed by content, complete or absent; honest status; inputs checked up front."""
import csv
import json
import os
from pathlib import Path

import pytest
import torch

from openood_immuno.cli.args import UsageError
from openood_immuno.experiments import results as results_mod
from openood_immuno.cli import main
from openood_immuno.core.status import DEGRADED, OK, PARTIAL, run_status
from openood_immuno.experiments.results import RunSpec, check_writable, write_run
from openood_immuno.experiments.runner import EvalResult

pytestmark = pytest.mark.filterwarnings("ignore:.*with RANDOM weights")
TINY = ["--model", "ImmunoTiny-ViT", "--device", "cpu"]
LISTS = {"test_imagenet.txt": 4, "test_ssb_hard.txt": 3, "test_ninco.txt": 3, "test_inaturalist.txt": 3,
         "test_textures.txt": 3, "test_openimage_o.txt": 3}


@pytest.fixture
def small_root(minibench, tmp_path):
    """A data_root with the benchmark's test lists cut to 3-4 images (images of minibench)."""
    root = tmp_path / "data"
    (root / "benchmark_imglist" / "imagenet").mkdir(parents=True)
    for folder in ("images_largescale", "images_classic"):
        os.symlink(minibench / folder, root / folder)
    for name, n in LISTS.items():
        lines = (minibench / "benchmark_imglist" / "imagenet" / name).read_text().splitlines()[:n]
        (root / "benchmark_imglist" / "imagenet" / name).write_text("\n".join(lines) + "\n")
    return root


def _eval(root, out, *extra, pretrained="none"):
    return main(["eval", "--data-root", str(root), *TINY, "--pretrained", str(pretrained),
                 "--postprocessors", "mcm", "--engine", "builtin", "--num-workers", "0",
                 "--output-dir", str(out), *extra])


def _runs(out):
    return sorted(p for p in Path(out).glob("*/*") if (p / "run.json").is_file())


# ---- status ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status, state, reason", [
    ({}, OK, ""),
    ({"degraded": False, "requests": 10, "requests_failed": 0, "lambda": 0.3}, OK, ""),
    ({"degraded": True, "degraded_reason": "NegLabel scores, MLLM unavailable"}, DEGRADED,
     "NegLabel scores, MLLM unavailable"),
    ({"degraded": True}, DEGRADED, "reports it ran degraded"),
    ({"fallback": "NegLabel"}, DEGRADED, "fallback to NegLabel"),
    ({"degraded": False, "requests": 104, "requests_failed": 104}, DEGRADED, "104 of 104 requests failed"),
    ({"requests": 104, "requests_failed": 3}, PARTIAL, "3 of 104 requests failed"),
    ({"degraded": False, "mllm_cost": {"requests": 104, "failures": 104}}, DEGRADED, "104 of 104"),
    ({"partial": "2 of 5 lists"}, PARTIAL, "2 of 5 lists"),
], ids=["empty", "ok", "degraded_reason", "degraded", "fallback", "all_failed", "some_failed",
        "mllm_cost", "partial"])
def test_run_status_reads_the_documented_keys(status, state, reason):
    st = run_status(status)
    assert st.state == state and reason in st.label
    assert st.tag("ants") == ("ants" if state == OK else f"ants [{state.upper()}: {'; '.join(st.reasons)}]")


def test_degraded_run_is_marked_everywhere_and_exits_non_zero(small_root, tmp_path, capsys, monkeypatch):
    import openood_immuno.postprocessors.registry as registry

    def degraded(*args, **kwargs):
        pp = build(*args, **kwargs)
        pp.status = lambda: {"degraded": True, "degraded_reason": "NegLabel scores, MLLM unavailable"}
        return pp

    build = registry.build_postprocessor
    monkeypatch.setattr(registry, "build_postprocessor", degraded)
    assert _eval(small_root, tmp_path / "out") == 3
    captured = capsys.readouterr()
    label = "DEGRADED: NegLabel scores, MLLM unavailable; RANDOM WEIGHTS: pretrained none"
    assert f"mcm [{label}]: not mcm's own numbers" in captured.out
    assert "--allow-degraded" in captured.err and "mcm [DEGRADED" in captured.err
    (run,) = _runs(tmp_path / "out")
    with open(run / "ood.csv") as fh:
        assert {r["status"] for r in csv.DictReader(fh)} == {label}
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"]["state"] == "degraded" and meta["status"]["postprocessor_status"]["degraded"]
    assert _eval(small_root, tmp_path / "out", "--allow-degraded") == 0
    assert main(["report", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report")
    md = (report / "report.md").read_text()
    assert f"| mcm [{label}] | openood |" in md
    assert "| mcm |" not in md
    with open(report / "leaderboard.csv") as fh:
        assert [r["Postprocessor"] for r in csv.DictReader(fh)] == [f"mcm [{label}]"]


# ---- run folders -----------------------------------------------------------------------------
def test_two_checkpoints_with_one_file_name_get_two_folders(tiny_net, small_root, tmp_path):
    for sub, scale in (("a", 1.0), ("b", 0.5)):
        (tmp_path / sub).mkdir()
        state = {k: v * scale if v.is_floating_point() else v for k, v in tiny_net.clip.state_dict().items()}
        torch.save(state, tmp_path / sub / "model.pt")
    out = tmp_path / "out"
    assert _eval(small_root, out, pretrained=tmp_path / "a" / "model.pt") == 0
    assert _eval(small_root, out, pretrained=tmp_path / "b" / "model.pt") == 0
    runs = _runs(out)
    assert len(runs) == 2 and {r.parent.name for r in runs} == {"imagenet_ImmunoTiny-ViT_model"}
    metas = [json.loads((r / "run.json").read_text()) for r in runs]
    assert {m["checkpoint"]["path"] for m in metas} == {str(tmp_path / s / "model.pt") for s in "ab"}
    assert main(["report", str(out)]) == 0
    md = (out / "report" / "report.md").read_text()
    assert all(f"| imagenet_ImmunoTiny-ViT_model/{r.name} | mcm |" in md for r in runs)
    assert sorted(p.name for p in (out / "report").glob("*.png")) == sorted(
        f"{r.name}_roc_hist.png" for r in runs)


def test_run_json_records_what_defines_the_run_and_pp_args_change_the_key(small_root, tmp_path):
    out = tmp_path / "out"
    assert _eval(small_root, out) == 0
    assert _eval(small_root, out, "--pp-arg", "mcm.T=2") == 0
    assert _eval(small_root, out, "--pp-arg", "mcm.T=2") == 0  # same content: replaced in place
    runs = _runs(out)
    assert len(runs) == 2
    metas = {json.loads((r / "run.json").read_text())["pp_args"]["T"]: json.loads((r / "run.json").read_text())
             for r in runs}
    assert set(metas) == {1, 2} and metas[2]["pp_overrides"] == {"T": 2} and metas[1]["pp_overrides"] == {}
    meta = metas[2]
    for key in ("versions", "seeds", "timings", "lists", "net_identity", "status", "files", "protocol"):
        assert key in meta, key
    assert meta["versions"]["torch"] and meta["versions"]["open_clip"] and meta["versions"]["openood_immuno"]
    assert meta["lists"]["id_test"]["images"] == 4 and meta["lists"]["id_train"] is None
    assert meta["files"][0] == "ood.csv" and all((runs[0] / f).is_file() for f in meta["files"])
    assert not [p for p in out.rglob(".*")]  # no temporary folder left behind


def _result():
    import numpy as np

    rows = {r: [50.0, 60.0, 70.0, 40.0, 1.0] for r in ("ssb_hard", "nearood", "textures", "farood")}
    scores = {"id": (np.zeros(5, int), np.linspace(0, 1, 5), np.zeros(5, int)),
              "ssb_hard": (np.zeros(5, int), np.linspace(0, 1, 5), -np.ones(5, int))}
    return EvalResult("mcm", rows, None, None, {}, {}, scores)


def _spec(**kw):
    base = dict(id_name="imagenet", model="ViT-B-16", pretrained="openai", net_identity="ViT-B-16|tag:openai",
                data_root="/data", lists={"id_test": {"sha256": "0"}}, postprocessor="mcm",
                pp_args={"T": 1}, protocol="openood")
    return RunSpec(**{**base, **kw})


def test_interrupted_write_leaves_no_folder_and_keeps_the_previous_run(tmp_path, monkeypatch):
    spec = _spec()
    first = write_run(str(tmp_path), spec, _result())
    before = (first / "ood.csv").read_text()
    result = _result()
    result.rows["nearood"][1] = 99.0

    def crash(folder):
        Path(folder, "ood.csv").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(result, "write_files", crash)
    with pytest.raises(KeyboardInterrupt):
        write_run(str(tmp_path), spec, result)
    assert (first / "ood.csv").read_text() == before  # the complete earlier run is still there
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no .tmp-* folder
    monkeypatch.undo()
    second = write_run(str(tmp_path), spec, result)  # same content: replaces atomically
    assert second == first and "99.00" in (second / "ood.csv").read_text()
    other = write_run(str(tmp_path), _spec(seeds=(1,), protocol="stream"), result)
    assert other != first and other.name.startswith("mcm_stream-")


def _write_many(out, n, barrier, failures):
    barrier.wait()                       # every writer starts at the same moment
    for _ in range(n):
        try:
            write_run(str(out), _spec(), _result())
        except Exception as exc:  # noqa: BLE001 - counted and shown by the test
            failures.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("swap, n", [(True, 30), (False, 15)], ids=["renameat2_exchange", "locked_fallback"])
def test_identical_runs_finishing_at_once_all_succeed(tmp_path, monkeypatch, swap, n):
    """8 processes x 30 writes of one run at once (240 writes, about 5 s on 2 cores; the code
    before failed 14 of 240 with "Directory not empty" / FileNotFoundError): every write
    succeeds, the folder is complete, nothing hidden is left. The same without renameat2 (other
    systems, NFS), where writers take turns (120 writes)."""
    import multiprocessing

    if swap and results_mod._renameat2 is None:
        pytest.skip("no renameat2 on this system")
    if not swap:
        monkeypatch.setattr(results_mod, "_renameat2", None)
    ctx = multiprocessing.get_context("fork")
    barrier, failures = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_write_many, args=(tmp_path, n, barrier, failures)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert not errors, f"{len(errors)} of {8 * n} writes failed, e.g. {errors[0]}"
    assert all(p.exitcode == 0 for p in procs)
    (run,) = _runs(tmp_path)
    assert sorted(json.loads((run / "run.json").read_text())["files"]) == sorted(
        p.name for p in run.iterdir() if p.name != "run.json")
    assert not list(tmp_path.rglob(".*"))   # no .tmp-* / .old-* left behind


def test_a_replaced_run_is_never_only_in_a_hidden_folder_and_stale_ones_are_cleaned(tmp_path, monkeypatch):
    """Killed writers leave hidden folders; the next write removes those whose process is gone,
    moves back a previous run left only in an ``.old-*`` folder, and never touches a live
    writer's folder."""
    import subprocess
    import sys

    first = write_run(str(tmp_path), _spec(), _result())
    parent = first.parent
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                                   # a pid that no longer runs
    host = results_mod._HOST
    # a writer killed between "previous run moved aside" and "new one renamed in" (the fallback)
    orphan = parent / f".old-{first.name}.{host}.{dead.pid}.abc123"
    os.rename(first, orphan)
    assert not first.exists()
    crashed_tmp = parent / f".tmp-{first.name}.{host}.{dead.pid}.def456"
    crashed_tmp.mkdir()
    (crashed_tmp / "ood.csv").write_text("half")
    legacy = parent / f".tmp-{first.name}-k2j3h4g5"              # an older version's name, a day old
    legacy.mkdir()
    os.utime(legacy, (1, 1))
    live = parent / f".tmp-other-0123456789ab.{host}.{os.getpid()}.0a1b2c"   # a live writer's
    live.mkdir()
    other_host = parent / f".tmp-other-0123456789ab.elsewhere.{dead.pid}.0a1b2c"   # fresh, other host
    other_host.mkdir()
    assert set(results_mod.clean_stale(str(tmp_path))) == {orphan, crashed_tmp, legacy}
    assert (first / "run.json").is_file()                        # the previous run is back in place
    assert sorted(p.name for p in parent.iterdir()) == sorted([first.name, live.name, other_host.name])
    second = write_run(str(tmp_path), _spec(), _result())      # a later run of the same key
    assert second == first and (first / "run.json").is_file()
    assert sorted(p.name for p in parent.iterdir()) == sorted([first.name, live.name, other_host.name])


def test_key_covers_what_defines_the_run_and_nothing_else(tmp_path):
    a, b = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"
    for path in (a, b):
        path.parent.mkdir()
        path.write_bytes(b"weights")
    ka, kb = _spec(pretrained=str(a)), _spec(pretrained=str(b))
    assert ka.folder("r").parent == kb.folder("r").parent == Path("r/imagenet_ViT-B-16_model")
    before = ka.key()
    assert before != kb.key()
    os.utime(a, ns=(1, 1))
    assert ka.key() == before  # touched, same bytes: the same run (a checkpoint is keyed by content)
    a.write_bytes(b"weightz")
    os.utime(a, ns=(1, 1))
    assert ka.key() != before  # same path, size and mtime, other bytes: another run
    assert _spec(pp_overrides={"T": 1}).key() == _spec().key()  # recorded, keyed through pp_args
    assert _spec(seeds=(0, 1)).key() == _spec().key()  # seeds count for the stream protocol only
    assert _spec(protocol="stream", seeds=(0, 1)).key() != _spec(protocol="stream").key()
    for change in ({"pp_args": {"T": 2}}, {"lists": {"id_test": {"sha256": "1"}}}, {"engine": "openood"},
                   {"score_batch_size": 64}, {"aps": True}, {"data_root": "/other"}):
        assert _spec(**change).key() != _spec().key(), change


# ---- checks before anything is built ---------------------------------------------------------
def test_failed_run_writes_nothing(small_root, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="--data-root '.*nowhere' does not exist"):
        _eval(tmp_path / "nowhere", out)
    (small_root / "benchmark_imglist" / "imagenet" / "test_ninco.txt").write_text("")
    with pytest.raises(ValueError, match="test_ninco.txt' is empty"):
        _eval(small_root, out)
    assert not out.exists()


def test_inputs_are_checked_before_the_model_is_built(small_root, tmp_path, monkeypatch):
    import openood_immuno.models.clip_net as clip_net

    monkeypatch.setattr(clip_net, "build_clip_net", lambda *a, **k: pytest.fail("model built before checks"))
    test_list = small_root / "benchmark_imglist" / "imagenet" / "test_imagenet.txt"
    lines = test_list.read_text().splitlines()
    test_list.write_text("\n".join(lines[:-1] + [lines[-1].split()[0] + " -1"]) + "\n")
    with pytest.raises(ValueError, match=r"test_imagenet\.txt:4: label -1 in an ID list"):
        _eval(small_root, tmp_path / "out")
    test_list.write_text("\n".join(lines + lines[:2]) + "\n")
    with pytest.raises(ValueError, match=r"test_imagenet\.txt' lists 2 image\(s\) more than once "
                                         r"\(e\.g\. '.*' at lines 1 and 5"):
        _eval(small_root, tmp_path / "out")
    test_list.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"--extra-ood name\(s\) \['ninco'\] collide with the benchmark"):
        _eval(small_root, tmp_path / "out", "--extra-ood", "ninco=benchmark_imglist/imagenet/test_ninco.txt")
    with pytest.raises(ValueError, match="--extra-ood names 'x' twice"):
        _eval(small_root, tmp_path / "out", "--extra-ood", "x=a.txt", "--extra-ood", "x=b.txt")
    with pytest.raises(ValueError, match=r"--extra-ood name 'a/b' must be letters"):
        _eval(small_root, tmp_path / "out", "--extra-ood", "a/b=a.txt")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"--output-dir '.*file/out' cannot be created: .* is a file"):
        _eval(small_root, blocker / "out")
    monkeypatch.setenv("OPENOOD_IMMUNO_CACHE", str(blocker / "cache"))
    with pytest.raises(ValueError, match=r"feature cache folder \(\$OPENOOD_IMMUNO_CACHE\)"):
        _eval(small_root, tmp_path / "out")


def test_read_only_folder_is_named(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results_mod.tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match=r"--output-dir '.*' is not writable \(Permission denied in"):
        check_writable(str(tmp_path / "new" / "deeper"), "--output-dir")
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    check_writable(str(tmp_path / "new"), "--output-dir")
