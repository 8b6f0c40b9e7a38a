"""No result labelled with a method that did not run (issue 18, class A).

An MLLM answering nothing usable is a failed request and leaves ANTS degraded (exit 3); ANTS
without an MLLM by configuration, and random weights, are marked in every output (exit 0);
``--pretrained ''`` is refused; ``--benchmark mos`` is scored by an engine that scores it and
read by ``report`` into a table of its own; OpenOOD's ``main.py`` route marks what it wrote.
"""
import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from fake_endpoint import UNUSABLE, ContentEndpoint, base_url, is_image_request, serving
from test_hardening import stream  # noqa: F401  (a fixture: 64 unit features, an image each)
from test_results import small_root  # noqa: F401  (a fixture: the test lists cut to 3-4 images)

from openood_immuno import build_postprocessor
from openood_immuno.cli import main, run
from openood_immuno.cli.args import UsageError
from openood_immuno.cli.eval import choose_engine
from openood_immuno.core.status import DEGRADED, OK, RANDOM_WEIGHTS, STAND_IN, run_status
from openood_immuno.methods.ants.fill import BankFill
from openood_immuno.openood.main import STATUS_LINE, exit_code, finished_status, mark_results, parse

pytestmark = pytest.mark.filterwarnings("ignore:.*with RANDOM weights", "ignore:ANTS is using the 'scripted'")
SMALL = dict(n_neg_labels=120, corpus_limit=600, n_groups=12, group_size=10, init_threshold=0.9,
             mine_min_cache=8, ens_max_updates=2, vsnl_start_batch=2, vsnl_interval=2, vsnl_top_k=3)
TINY = ["--model", "ImmunoTiny-ViT", "--device", "cpu", "--num-workers", "0", "--no-progress"]
RANDOM = "RANDOM WEIGHTS: pretrained none"


def ants(net, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_postprocessor("ants", **{**SMALL, **kw}).fit(net, {})


def run_stream(pp, stream):
    feats, paths = stream
    return torch.cat([pp.score_features(feats[i:i + 16], paths[i:i + 16])[1] for i in range(0, 64, 16)])


def replies(ens, vsnl):
    """``server.content``: ``ens`` for image requests (ENS), ``vsnl`` for text ones."""
    return lambda payload: ens if is_image_request(payload) else vsnl


# ---- 1. an MLLM answering nothing usable -----------------------------------------------------
@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_a_reply_without_usable_text_is_a_failed_request(kind, tiny_net, stream):
    with serving(ContentEndpoint, content=replies(UNUSABLE[kind], UNUSABLE[kind])) as srv:
        pp = ants(tiny_net, mllm=f"openai:tiny@{base_url(srv)}")
        conf = run_stream(pp, stream)
    status = pp.status()
    cost = status["mllm_cost"]
    assert srv.requests and cost["requests"] == cost["failures"] == cost["unusable"] > 0
    assert status["ens_bank"] == status["vsnl_bank"] == 0 and status["degraded"]
    assert status["degraded_reason"].startswith(f"MLLM: {cost['failures']} of {cost['requests']} requests "
                                                f"failed ({cost['unusable']} answered no usable text)")
    assert "ENS bank empty at the end of 1 of 1 streams" in status["degraded_reason"]
    assert run_status(status).state == DEGRADED and status["stand_in"] is None
    assert torch.equal(conf, run_stream(ants(tiny_net, mllm="none"), stream))   # NegLabel's numbers


def test_some_unusable_replies_count_and_a_short_vsnl_bank_is_degraded(tiny_net, stream):
    # ENS answers, VSNL gives one name of the five asked: below min_bank_fill (0.5)
    with serving(ContentEndpoint, content=replies("A red lantern.", "1. lynx")) as srv:
        pp = ants(tiny_net, mllm=f"openai:tiny@{base_url(srv)}")
        run_stream(pp, stream)
        lenient = ants(tiny_net, mllm=f"openai:tiny@{base_url(srv)}", min_bank_fill=0.1)
        run_stream(lenient, stream)
    status = pp.status()
    fill = status["bank_fill"]
    assert status["mllm_cost"]["failures"] == 0 and status["ens_bank"] > 0 and status["vsnl_bank"] > 0
    assert fill["vsnl_usable"] * 5 == fill["vsnl_asked"] and fill["ens_usable"] == fill["ens_asked"] > 0
    assert status["degraded_reason"] == (f"VSNL: {fill['vsnl_usable']} usable of {fill['vsnl_asked']} names "
                                         "asked (below min_bank_fill 0.5)")
    assert not lenient.status()["degraded"] and run_status(lenient.status()).ok
    # one usable ENS answer in two: failed requests counted, the run degraded (any failure is)
    answers = iter(["A red lantern.", None] * 100)
    with serving(ContentEndpoint, content=lambda p: next(answers) if is_image_request(p) else "1. a\n2. b\n3. c\n4. d\n5. e") as srv:
        half = ants(tiny_net, mllm=f"openai:tiny@{base_url(srv)}")
        run_stream(half, stream)
    cost = half.status()["mllm_cost"]
    assert 0 < cost["unusable"] == cost["failures"] < cost["requests"] and half.status()["degraded"]


def test_bank_fill_rules_per_mode():
    fill = BankFill(ens_asked=10, ens_usable=4, vsnl_asked=20, vsnl_usable=20)
    fill.end_stream(ens_size=3, vsnl_size=0)
    assert fill.problems(True, True, 0.5) == ["ENS: 4 usable of 10 images described (below min_bank_fill 0.5)",
                                              "VSNL bank empty at the end of 1 of 1 streams"]
    assert fill.problems(True, False, 0.4) == []            # far_only never reads VSNL
    assert fill.problems(False, True, 0.0) == ["VSNL bank empty at the end of 1 of 1 streams"]
    idle = BankFill().closed(0, 5)
    assert idle.problems(True, True, 0.5) == ["ENS bank empty at the end of 1 of 1 streams (no ENS update ran)"]


def test_min_bank_fill_is_a_documented_param():
    from openood_immuno.methods.ants import ANTSParams

    assert ANTSParams().min_bank_fill == 0.5
    assert "| `min_bank_fill` |" in (Path(__file__).parents[1] / "docs" / "ants.md").read_text()
    with pytest.raises(ValueError, match="min_bank_fill"):
        build_postprocessor("ants", mllm="none", min_bank_fill=1.5)


# ---- 2. ANTS without an MLLM by configuration, the test backend -----------------------------
def test_no_mllm_and_the_test_backend_are_marked_not_degraded(tiny_net, stream):
    none = ants(tiny_net, mllm="none")
    run_stream(none, stream)
    st = run_status(none.status())
    assert st.state == STAND_IN and st.tag("ants") == "ants [NO MLLM: NegLabel scores]" and not st.fails
    scripted = ants(tiny_net, mllm="scripted")
    run_stream(scripted, stream)
    st = run_status(scripted.status(), random_weights=True)
    assert st.label == f"TEST MLLM: scripted answers, not a model; {RANDOM}" and not st.fails


# ---- CLI: every output, exit codes -------------------------------------------------------------
@pytest.fixture
def mos_root(small_root, minibench):
    """``small_root`` (test_results: the test lists cut to 3-4 images) plus the MOS four lists,
    3 minibench images each."""
    (small_root / "benchmark_imglist" / "mos").mkdir()
    for mos, source, skip in (("inaturalist", "inaturalist", 0), ("sun", "ninco", 0),
                              ("places", "openimage_o", 0), ("textures", "textures", 3)):
        lines = (minibench / "benchmark_imglist" / "imagenet" / f"test_{source}.txt").read_text().splitlines()
        (small_root / "benchmark_imglist" / "mos" / f"test_{mos}.txt").write_text("\n".join(lines[skip:skip + 3]) + "\n")
    return small_root


def _eval(root, out, *extra, pp="mcm", pretrained="none"):
    return main(["eval", "--data-root", str(root), *TINY, "--pretrained", pretrained, "--postprocessors", pp,
                 "--output-dir", str(out), *extra])


def _only_run(out, pp):
    (folder,) = [p for p in Path(out).glob(f"*/{pp}-*") if (p / "run.json").is_file()]
    with open(folder / "ood.csv") as fh:
        statuses = {r["status"] for r in csv.DictReader(fh)}
    return folder, statuses, json.loads((folder / "run.json").read_text())


ANTS_ARGS = [f"ants.{k}={v}" for k, v in dict(SMALL, mine_min_cache=0, vsnl_start_batch=1).items()]


def test_eval_ants_with_an_mllm_answering_null_exits_3_and_no_mllm_is_marked(small_root, tmp_path, capsys):
    out = tmp_path / "out"
    pp_args = [x for a in ANTS_ARGS for x in ("--pp-arg", a)]
    with serving(ContentEndpoint, content=lambda payload: None) as srv:
        endpoint = ["--pp-arg", f"ants.mllm=openai:tiny@{base_url(srv)}", "--engine", "builtin"]
        assert _eval(small_root, out, *pp_args, *endpoint, pp="ants") == 3
        assert srv.requests
    captured = capsys.readouterr()
    assert "ants [DEGRADED: MLLM: " in captured.out and "--allow-degraded" in captured.err
    folder, statuses, meta = _only_run(out, "ants")
    (label,) = statuses
    assert label.startswith("DEGRADED: MLLM: ") and "answered no usable text" in label and label.endswith(RANDOM)
    assert meta["status"]["state"] == DEGRADED and meta["status"]["label"] == label
    with serving(ContentEndpoint, content=lambda payload: None) as srv:
        endpoint = ["--pp-arg", f"ants.mllm=openai:tiny@{base_url(srv)}", "--engine", "builtin"]
        assert _eval(small_root, out, *pp_args, *endpoint, "--allow-degraded", pp="ants") == 0
    # by configuration, without an MLLM: marked everywhere, exit 0
    none_out = tmp_path / "none"
    assert _eval(small_root, none_out, *pp_args, "--pp-arg", "ants.mllm=none", "--engine", "builtin", pp="ants") == 0
    assert f"ants [NO MLLM: NegLabel scores; {RANDOM}]: not ants's own numbers" in capsys.readouterr().out
    folder, statuses, meta = _only_run(none_out, "ants")
    assert statuses == {f"NO MLLM: NegLabel scores; {RANDOM}"} and meta["status"]["state"] == STAND_IN
    assert main(["report", str(none_out)]) == 0
    md = (none_out / "report" / "report.md").read_text()
    assert f"| ants [NO MLLM: NegLabel scores; {RANDOM}] | openood |" in md and "| ants |" not in md
    with open(none_out / "report" / "leaderboard.csv") as fh:
        assert [r["Postprocessor"] for r in csv.DictReader(fh)] == [f"ants [NO MLLM: NegLabel scores; {RANDOM}]"]


# ---- 5. random weights ---------------------------------------------------------------------------
def test_random_weights_have_their_own_status_and_exit_0(small_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert _eval(small_root, out, "--engine", "builtin") == 0   # README's first command's flags
    assert f"mcm [{RANDOM}]: random weights: the numbers check the pipeline" in capsys.readouterr().out
    folder, statuses, meta = _only_run(out, "mcm")
    assert statuses == {RANDOM} and meta["status"]["state"] == RANDOM_WEIGHTS
    assert main(["report", str(out)]) == 0
    assert f"| mcm [{RANDOM}] | openood |" in (out / "report" / "report.md").read_text()
    with open(out / "report" / "leaderboard.csv") as fh:
        assert [r["Postprocessor"] for r in csv.DictReader(fh)] == [f"mcm [{RANDOM}]"]


@pytest.mark.parametrize("command", ["eval", "falsify", "features", "neglabels", "vaccinate"])
def test_an_empty_pretrained_is_refused_before_any_work(command, small_root, tmp_path, capsys, monkeypatch):
    import openood_immuno.models.clip_net as clip_net

    monkeypatch.setattr(clip_net, "build_clip_net", lambda *a, **k: pytest.fail("a model was built"))
    argv = {"eval": ["eval", "--data-root", str(small_root)], "falsify": ["falsify", "--data-root", str(small_root), "--output-dir", str(tmp_path / "f")],
            "features": ["features", "--data-root", str(small_root)],
            "neglabels": ["neglabels", "--out", str(tmp_path / "n.txt")],
            "vaccinate": ["vaccinate", "--data-root", str(small_root)]}[command]
    assert run([*argv, "--model", "ImmunoTiny-ViT", "--pretrained", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["openood-immuno: error: --pretrained is empty (''; an unset variable?): pass an open_clip "
                   "tag such as openai, a checkpoint path, or none for random weights"]
    assert not (tmp_path / "n.txt").exists()


def test_an_empty_pretrained_is_refused_by_the_api():
    from openood_immuno import build_clip_net

    with pytest.raises(ValueError, match="pretrained is empty"):
        build_clip_net("ImmunoTiny-ViT", "  ", ["cat"])


# ---- 4. --benchmark mos --------------------------------------------------------------------------
@pytest.mark.parametrize("engine, protocol, benchmark, extra, seeds, installed, expected", [
    ("auto", "openood", "openood", [], None, True, "openood"),
    ("auto", "openood", "mos", [], None, True, "builtin"),     # OpenOOD's Evaluator cannot score MOS
    ("auto", "openood", "openood", [], None, False, "builtin"),
    ("auto", "stream", "openood", [], None, True, "builtin"),
    ("auto", "openood", "openood", ["x=y"], None, True, "builtin"),
    ("auto", "openood", "openood", [], "0,1", True, "builtin"),
    ("builtin", "openood", "mos", [], None, True, "builtin"),
    ("openood", "openood", "openood", [], None, True, "openood"),
])
def test_the_engine_scores_the_benchmark_asked_for(engine, protocol, benchmark, extra, seeds, installed, expected):
    assert choose_engine(engine, protocol, benchmark, extra, seeds, installed) == expected


def test_engine_openood_with_mos_is_refused_in_one_line(mos_root, monkeypatch):
    from openood_immuno.openood import registry

    monkeypatch.setattr(registry, "openood_available", lambda: True)
    with pytest.raises(UsageError, match=r"^--engine openood scores OpenOOD's own OOD sets, not --benchmark "
                                         r"mos: use --engine builtin \(or auto\)$"):
        main(["eval", "--data-root", str(mos_root), "--benchmark", "mos", "--engine", "openood", *TINY])
    from openood_immuno.cli.eval import _engine
    from openood_immuno.cli.main import build_parser

    args = build_parser().parse_args(["eval", "--data-root", str(mos_root), "--benchmark", "mos"])
    assert _engine(args) == "builtin"      # OpenOOD "installed": auto still picks builtin for MOS


def test_mos_runs_are_scored_as_asked_and_reported_in_a_table_of_their_own(mos_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert _eval(mos_root, out, "--benchmark", "mos") == 0    # auto: builtin
    assert _eval(mos_root, out, "--engine", "builtin") == 0
    folder = next(p for p in out.glob("*/mcm-*") if json.loads((p / "run.json").read_text())["benchmark"] == "mos")
    with open(folder / "ood.csv") as fh:
        assert [r["dataset"] for r in csv.DictReader(fh)] == ["inaturalist", "sun", "places", "textures", "farood"]
    assert json.loads((folder / "run.json").read_text())["engine"] == "builtin"
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    said = capsys.readouterr().out     # the summary counts each kind of run
    assert "1 OpenOOD-benchmark run(s) (near / far AUROC):" in said and "1 MOS-four run(s) (average AUROC):" in said
    assert f"leaderboard (MOS four): {out / 'report' / 'leaderboard_mos.csv'}" in said
    md = (out / "report" / "report.md").read_text()
    assert "## Our runs: MOS four" in md and f"/{folder.name} | mcm [{RANDOM}] | openood |" in md
    with open(out / "report" / "leaderboard_mos.csv") as fh:
        (mos,) = list(csv.DictReader(fh))
    with open(folder / "ood.csv") as fh:
        rows = {r["dataset"]: r for r in csv.DictReader(fh)}
    assert mos["SUN_AUROC"] == rows["sun"]["AUROC"] and mos["Average_FPR@95"] == rows["farood"]["FPR@95"]
    with open(out / "report" / "leaderboard.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 1          # the OpenOOD-benchmark run only


def test_report_reads_an_older_mos_run_without_a_benchmark_field(tmp_path):
    import numpy as np

    from openood_immuno.experiments.report import find_runs
    from openood_immuno.experiments.results import RunSpec, write_run
    from openood_immuno.experiments.runner import EvalResult

    rows = {r: [40.0, 80.0, 70.0, 60.0, 1.0] for r in ("inaturalist", "sun", "places", "textures", "farood")}
    result = EvalResult("mcm", rows, scores={"id": (np.zeros(3, int), np.ones(3), np.zeros(3, int))})
    spec = RunSpec("imagenet", "ViT-B-16", "openai", "x", "/data", {}, "mcm", {}, "openood")
    write_run(str(tmp_path), spec, result)
    (run,) = find_runs(str(tmp_path))
    assert run["benchmark"] == "mos"


# ---- 3. OpenOOD's main.py route: marking and exit code (no OpenOOD needed) ----------------------
def _openood_folder(tmp_path):
    folder = tmp_path / "imagenet_clip_test_ood_ood_ants_default" / "s0" / "ood"
    folder.mkdir(parents=True)
    (folder / "ood.csv").write_text("dataset,FPR@95,AUROC,AUPR_IN,AUPR_OUT,ACC\nssb_hard,90.00,55.00,1,2,3\n"
                                    "nearood,90.00,55.00,1,2,3\n")
    (folder / "log.txt").write_text("Completed!\n")
    (folder / "config.yml").write_text("postprocessor:\n  name: ants\n")
    return folder


def test_openood_main_results_are_marked(tmp_path):
    folder = _openood_folder(tmp_path)
    status = run_status({"degraded": True, "degraded_reason": "MLLM unavailable: NegLabel scores"}, True)
    label = f"DEGRADED: MLLM unavailable: NegLabel scores; {RANDOM}"
    assert len(mark_results(str(folder), status)) == 3
    mark_results(str(folder), status)          # twice marks once
    with open(folder / "ood.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == [label, label] and rows[0]["AUROC"] == "55.00"
    assert (folder / "log.txt").read_text().splitlines()[-1] == STATUS_LINE + label
    config = (folder / "config.yml").read_text()
    assert config.startswith(f"# {STATUS_LINE}{label}\n") and config.count(STATUS_LINE) == 1
    assert yaml.safe_load(config) == {"postprocessor": {"name": "ants"}}


def test_openood_main_follows_evals_exit_code_rule(capsys):
    degraded = run_status({"degraded": True, "degraded_reason": "MLLM unavailable: NegLabel scores"})
    assert exit_code(degraded, False, "ants") == 3
    assert "ants [DEGRADED: MLLM unavailable: NegLabel scores]" in capsys.readouterr().err
    assert exit_code(degraded, True, "ants") == 0
    assert exit_code(run_status({"stand_in": "NO MLLM: NegLabel scores"}, True), False) == 0
    assert exit_code(run_status({}), False) == 0 and exit_code(None, False) == 0
    assert parse(["--config", "a.yml", "--allow-degraded", "--opts", "data_root", "d"]) == (
        ["a.yml"], ["--data_root", "d"], True)


def test_openood_main_status_of_a_finished_run():
    class PP:
        def status(self):
            return {"stand_in": "NO MLLM: NegLabel scores"}

    clip = {"network": {"name": "clip", "pretrained": "none"}}
    assert finished_status(clip, PP()).label == f"NO MLLM: NegLabel scores; {RANDOM}"
    trained = {"network": {"name": "clip", "pretrained": "openai"}}
    assert finished_status(trained, object()).state == OK          # OpenOOD's own postprocessor
    assert finished_status(trained, None) is None                  # ran in other processes
