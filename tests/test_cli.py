"""The ``openood-immuno`` command line: instant help, one-line errors (exit 2), Ctrl-C, progress, warnings.

Rows of docs/hardening.md ("Command line") name these tests.
"""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import openood_immuno.experiments.report
from openood_immuno.cli import build_parser, main, run
from openood_immuno.cli.args import parse_pp_args, parse_seeds
from openood_immuno.cli.errors import one_line, worker_message
from openood_immuno.experiments.results import RunSpec, write_run
from openood_immuno.experiments.runner import EvalResult

TINY = ["--model", "ImmunoTiny-ViT", "--pretrained", "none", "--device", "cpu"]
HEAVY = ("torch", "open_clip", "transformers", "torchvision", "numpy", "PIL")
COMMANDS = ("eval", "report", "features", "antibodies", "vaccinate", "falsify", "neglabels", "openood-main",
            "openood-config")


def console_script() -> str:
    """The installed ``openood-immuno`` entry point (beside this Python, or on PATH)."""
    here = Path(sys.executable).with_name("openood-immuno")
    path = str(here) if here.exists() else shutil.which("openood-immuno")
    assert path, "openood-immuno is not installed: pip install -e ."
    return path


def timed(cmd, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    return proc, time.perf_counter() - start


def one_error_line(err: str) -> str:
    """The one error line of a failed command (warnings, one line each, aside)."""
    lines = [line for line in err.splitlines() if line.strip() and "openood-immuno: warning: " not in line]
    assert len(lines) == 1 and lines[0].startswith("openood-immuno: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---- help --------------------------------------------------------------------------------------
def test_help_of_every_command_imports_no_torch():
    code = ("import sys, contextlib, io\n"
            "from openood_immuno.cli import build_parser\n"
            "p = build_parser()\n"
            f"for argv in [[]] + [[c] for c in {COMMANDS!r}]:\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        p.parse_args(argv + ['--help'])\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


@pytest.mark.parametrize("command", ("",) + COMMANDS)
def test_help_of_the_installed_console_script_is_instant(command):
    proc, seconds = timed([console_script(), *([command] if command else []), "--help"])
    print(f"openood-immuno {command} --help: {seconds:.2f} s")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: openood-immuno")
    assert seconds < 5  # about 0.2 s idle; the bound only tolerates a loaded CI machine


def test_help_texts_are_plain_complete_and_print_each_default_once():
    parser = build_parser()
    top = parser.format_help()
    assert "``" not in top and "Vision-language OOD scorers" in top
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert command.description, name
        text = command.format_help()
        assert "(default: None)" not in text and not re.search(r"default.*\(default:", text), name
        for action in command._actions:
            assert action.help, (name, action.dest)
    vaccinate = sub.choices["vaccinate"].format_help()
    assert "(default: the config's antibody_bank)" in " ".join(vaccinate.split())
    assert "(default: ViT-B-16)" in " ".join(sub.choices["eval"].format_help().split())


def test_python_m_runs_the_cli():
    proc, _ = timed([sys.executable, "-m", "openood_immuno.cli", "report", "--help"])
    assert proc.returncode == 0 and "usage: openood-immuno report" in proc.stdout


def test_import_of_the_cli_loads_no_torch():
    code = f"import sys, openood_immuno.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def _choices(command: str, dest: str):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return next(a for a in sub._actions if a.dest == dest).choices


def test_the_cli_offers_the_library_constants_themselves():
    """No copies: the parser's choices are the torch-free tables of the library."""
    from openood_immuno.data.benchmarks import BENCHMARKS, OOD_PRESETS
    from openood_immuno.data.decode_options import BACKENDS
    from openood_immuno.experiments import runner
    from openood_immuno.experiments.falsification import DEFAULT_VARIANTS
    from openood_immuno.experiments.protocols import PROTOCOLS
    from openood_immuno.experiments.variants import VARIANTS

    for command in ("eval", "features", "vaccinate", "falsify"):
        assert list(_choices(command, "id_name")) == list(BENCHMARKS)
    assert _choices("eval", "benchmark") is OOD_PRESETS and _choices("eval", "protocol") is PROTOCOLS
    assert runner.PROTOCOLS is PROTOCOLS
    assert _choices("features", "decode") is BACKENDS
    assert VARIANTS == tuple(v.label for v in DEFAULT_VARIANTS)


# ---- bad flags: one line, exit 2, before any model is built ----------------------------------------
def test_misspelled_postprocessor_fails_fast_with_did_you_mean(tmp_path):
    proc, seconds = timed([console_script(), "eval", "--postprocessors", "imuno",
                           "--data-root", str(tmp_path)])
    print(f"eval --postprocessors imuno: {seconds:.2f} s")
    line = one_error_line(proc.stderr)
    assert proc.returncode == 2 and "unknown postprocessor 'imuno' (did you mean 'immuno'?)" in line
    assert seconds < 5  # about 0.2 s idle (the promise is < 2 s); no torch is imported first


@pytest.mark.parametrize("argv, message", [
    (["--postprocessors", ","], r"--postprocessors ',' names no postprocessor: pass one or more of"),
    (["--postprocessors", "mcm,mcm"], r"--postprocessors names \['mcm'\] more than once"),
    (["--seeds", "0,x"], r"--seeds '0,x': 'x' is not a non-negative integer in ASCII digits; pass "
                          r"comma-separated integers"),
    (["--seeds", "0,0"], r"--seeds '0,0' repeats a seed"),
    (["--pp-arg", "mcm.T"], r"--pp-arg expects NAME.KEY=VALUE \(e.g. immuno.epochs=5\), got 'mcm.T'"),
    (["--pp-arg", "T=1"], r"--pp-arg expects NAME.KEY=VALUE"),
    (["--pp-arg", "mcm.T=[1"], r"--pp-arg 'mcm.T=\[1': the value is not valid YAML"),
    (["--pp-arg", "mcn.T=1"], r"--pp-arg 'mcn.T=1' names 'mcn', which is not among the postprocessors "
                              r"run here \['mcm'\] \(did you mean 'mcm'\?\)"),
], ids=["empty-postprocessors", "duplicate-postprocessors", "seeds", "duplicate-seeds", "pp-arg-no-value",
        "pp-arg-no-name", "pp-arg-yaml", "pp-arg-name"])
def test_bad_eval_flags_are_one_line_exit_2(argv, message, tmp_path, capsys):
    assert run(["eval", "--data-root", str(tmp_path), *argv]) == 2
    assert re.search(message, one_error_line(capsys.readouterr().err))


def test_data_root_and_its_lists_are_checked_before_the_model(tmp_path, capsys, monkeypatch):
    import openood_immuno.models.clip_net as clip_net

    monkeypatch.setattr(clip_net, "build_clip_net", lambda *a, **k: pytest.fail("model built"))
    assert run(["eval", "--data-root", str(tmp_path / "nowhere"), *TINY]) == 2
    assert "--data-root '" in one_error_line(capsys.readouterr().err)
    (tmp_path / "benchmark_imglist" / "imagenet").mkdir(parents=True)
    (tmp_path / "benchmark_imglist" / "imagenet" / "test_imagenet.txt").write_text("a.jpg 0\n")
    assert run(["eval", "--data-root", str(tmp_path), *TINY, "--postprocessors", "mcm,immuno"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "lacks the image list(s) ['benchmark_imglist/imagenet/test_ssb_hard.txt'" in line
    assert "train_imagenet.txt" in line and "val_imagenet.txt" in line   # immuno trains and calibrates
    assert run(["eval", "--data-root", str(tmp_path), *TINY]) == 2
    assert "train_imagenet.txt" not in capsys.readouterr().err          # MCM needs neither


def test_vaccinate_uses_pp_arg_like_eval(tmp_path, capsys):
    assert run(["vaccinate", "--data-root", str(tmp_path), *TINY, "--pp-arg", "ants.epochs=1"]) == 2
    assert "--pp-arg 'ants.epochs=1' names 'ants', which is not among the postprocessors run here " \
           "['immuno']" in one_error_line(capsys.readouterr().err)
    assert run(["vaccinate", "--data-root", str(tmp_path), "--config", "imuno"]) == 2
    assert "--config: unknown postprocessor 'imuno' (did you mean 'immuno'?)" in capsys.readouterr().err
    assert parse_pp_args(["immuno.margin=0.3", "immuno.templates=['a {}']"], ["immuno"]) == \
        {"immuno": {"margin": 0.3, "templates": ["a {}"]}}
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    with pytest.raises(SystemExit):   # the old spelling is gone
        main(["vaccinate", "--data-root", str(tmp_path), "--set", "margin=0.3"])


# ---- every exception type: one line, exit 2 ------------------------------------------------------
def _load_npz(path):
    return np.load(path)


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


EXCEPTIONS = {
    "PermissionError": (PermissionError(errno.EACCES, "Permission denied", "/results/run.json"),
                        r"'/results/run.json': Permission denied: grant access to it or choose another path"),
    "NotADirectoryError": (None, r"Not a directory: a part of this path is a file, not a folder"),
    "IsADirectoryError": (None, r"Is a directory: a folder stands where a file is expected"),
    "FileExistsError": (None, r"File exists: remove it or choose another path"),
    "read-only": (OSError(errno.EROFS, "Read-only file system", "/ro/cache/x.pt"),
                  r"'/ro/cache/x.pt': read-only filesystem: write elsewhere \(--output-dir, --out"),
    "TypeError": (TypeError("unsupported operand type(s) for +: 'int' and 'str'"),
                  r"TypeError: unsupported operand .* in test_cli.py:\d+ \(fail\)"),
    "ZeroDivisionError": (ZeroDivisionError(), r"ZeroDivisionError without a message in test_cli.py:\d+ "
                                               r"\(fail\): run again with --verbose"),
    "BadZipFile": (None, r"'.*scores_ninco.npz': damaged archive \(.*\), e.g. a file cut short by an "
                         r"interrupted run: delete it and run again"),
    "empty message": (RuntimeError(""), r"RuntimeError without a message in test_cli.py"),
}


@pytest.mark.parametrize("case", list(EXCEPTIONS))
def test_every_exception_type_is_one_line_exit_2(case, tmp_path, capsys, monkeypatch):
    exc, message = EXCEPTIONS[case]
    results = tmp_path / "results"
    rows = {r: [90.0, 50.0, 50.0, 50.0, 1.0] for r in ("ssb_hard", "ninco", "nearood", "inaturalist",
                                                       "textures", "openimage_o", "farood")}
    spec = RunSpec("imagenet", "ViT-B-16", "openai", "ViT-B-16|tag:openai", "/data",
                   {"id_test": {"sha256": "0"}}, "mcm", {}, "openood")
    write_run(str(results), spec, EvalResult("mcm", rows))            # one complete run to report
    out = tmp_path / "out"
    if case == "NotADirectoryError":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "report"                   # real: a folder under a file
    elif case == "IsADirectoryError":
        (out / "leaderboard.csv").mkdir(parents=True)       # real: a folder where a file goes
    elif case == "FileExistsError":
        out.write_text("x")                                  # real: --out is a file
    elif case == "BadZipFile":
        broken = tmp_path / "scores_ninco.npz"
        broken.write_bytes(b"PK\x03\x04 cut short")
        monkeypatch.setattr(openood_immuno.experiments.report, "write_report", lambda *a: _load_npz(broken))
    else:
        monkeypatch.setattr(openood_immuno.experiments.report, "write_report", _raise(exc))
    assert run(["report", str(results), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.search(message, line), line
    assert line.endswith("(--verbose shows the traceback)")


def test_verbose_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(openood_immuno.experiments.report, "write_report", _raise(ZeroDivisionError()))
    with pytest.raises(ZeroDivisionError):
        run(["--verbose", "report", str(tmp_path)])


def test_decompression_bomb_and_corrupt_image_in_dataloader_workers(tmp_path, capsys, monkeypatch):
    """Real workers (--num-workers 2): the worker's traceback is unwrapped to its message."""
    root = tmp_path / "root"
    (root / "benchmark_imglist" / "imagenet").mkdir(parents=True)
    for folder in ("images_largescale", "images_classic"):
        (root / folder).mkdir()
        for i in range(2):
            Image.new("RGB", (40, 40), (60 * i, 90, 30)).save(root / folder / f"ok{i}.png")
    (root / "images_largescale" / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    Image.new("L", (400, 400)).save(root / "images_largescale" / "huge.png")
    lists = {"test_imagenet.txt": "ok0.png 0\nok1.png 1\nbad.jpg 2\n", "test_textures.txt": "ok0.png -1\n"}
    for name in ("ssb_hard", "ninco", "inaturalist", "openimage_o"):
        lists[f"test_{name}.txt"] = "ok0.png -1\nok1.png -1\n"
    for name, text in lists.items():
        (root / "benchmark_imglist" / "imagenet" / name).write_text(text)
    argv = ["eval", "--data-root", str(root), *TINY, "--engine", "builtin", "--num-workers", "2",
            "--batch-size", "1", "--output-dir", str(tmp_path / "res"), "--no-progress"]
    assert run(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.search(r"error: image '.*bad.jpg' \(listed in .*test_imagenet.txt\) is corrupt or truncated", line)
    assert "raised in a DataLoader worker; --num-workers 0 runs it in-process" in line
    assert "Original Traceback" not in line and "File \"" not in line

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40)
    (root / "benchmark_imglist" / "imagenet" / "test_imagenet.txt").write_text("ok0.png 0\nhuge.png 1\n")
    assert run(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.search(r"error: image '.*huge.png' \(listed in .*test_imagenet.txt\) is too large to open "
                     r"safely \(Image size \(160000 pixels\) exceeds limit", line), line
    assert "--num-workers 0 runs it in-process" in line and "Original Traceback" not in line
    assert run([*argv, "--num-workers", "0"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.search(r"image '.*huge.png' .*is too large to open safely .*: shrink it", line), line


def test_worker_message_unwraps_the_original_error():
    wrapped = ("Caught RuntimeError in DataLoader worker process 1.\nOriginal Traceback (most recent call "
               "last):\n  File \"/x/worker.py\", line 308, in _worker_loop\n    data = fetcher.fetch(index)\n"
               "PIL.UnidentifiedImageError: cannot identify image file\n\nThe above exception was the direct "
               "cause of the following exception:\n\nTraceback (most recent call last):\n  File \"/x/data.py\", "
               "line 9, in load_rgb\n    raise RuntimeError(...)\n"
               "RuntimeError: image '/d/a.jpg' (listed in /d/l.txt) is corrupt\nsecond line\n")
    assert worker_message(wrapped) == "RuntimeError: image '/d/a.jpg' (listed in /d/l.txt) is corrupt\nsecond line"
    assert worker_message("plain") is None
    assert one_line(RuntimeError(wrapped)).startswith("image '/d/a.jpg' (listed in /d/l.txt) is corrupt second line")
    assert one_line(KeyError("unknown postprocessor 'x'")) == "unknown postprocessor 'x'"
    assert one_line(zipfile.BadZipFile("File is not a zip file")).startswith("damaged archive")


# ---- Ctrl-C -----------------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_exit_130(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(openood_immuno.experiments.report, "write_report", _raise(KeyboardInterrupt()))
    assert run(["report", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "openood-immuno: interrupted"


def test_sigint_stops_a_running_command_without_traceback(tmp_path):
    """A real SIGINT while ``python -m openood_immuno.cli antibodies`` generates a bank."""
    proc = subprocess.Popen([sys.executable, "-m", "openood_immuno.cli", "antibodies", "--out",
                             str(tmp_path / "bank.json"), "--no-filter-summary"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = bytearray()

    def read():
        for chunk in iter(lambda: proc.stderr.read1(256), b""):
            err.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while b"antibodies (wordnet)" not in err and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, err.decode()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    reader.join(timeout=10)
    text = err.decode().replace("\r", "\n")
    assert "Traceback" not in text and text.rstrip().endswith("openood-immuno: interrupted")


# ---- antibodies: offline summary, one shortfall line ---------------------------------------------------
def test_documented_antibodies_command_exits_0_offline(tmp_path):
    """The README's command (a 3-class list for speed) with the hub unreachable (HF_HUB_OFFLINE)."""
    classes = tmp_path / "classes.txt"
    classes.write_text("tench\ngoldfish\nlens cap\n")
    out = tmp_path / "bank.json"
    proc, seconds = timed([sys.executable, "-m", "openood_immuno.cli", "antibodies", "--id", str(classes),
                           "--generator", "wordnet", "--out", str(out), "--no-progress"],
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    print(proc.stdout, proc.stderr, f"{seconds:.1f} s", sep="\n")
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("band-pass summary skipped")]
    assert len(skipped) == 1 and "--no-filter-summary" in skipped[0] and "--pretrained" in skipped[0]
    assert "could not obtain pretrained weights ViT-B-16/openai" in skipped[0]
    assert "Traceback" not in proc.stderr and "Failed to download" not in proc.stderr
    summary = json.loads((tmp_path / "bank.summary.json").read_text())
    assert "skipped" in summary["filter"] and len(summary["per_class"]) == 3


def test_shortfalls_are_one_line_with_the_full_list_in_the_summary(tmp_path, capsys):
    out = tmp_path / "bank.json"
    assert main(["antibodies", "--id", "imagenet", "--out", str(out), "--n-near", "40",
                 "--no-progress", "--no-filter-summary", *TINY]) == 0
    printed = capsys.readouterr()
    summary = json.loads((tmp_path / "bank.summary.json").read_text())
    short = summary["short"]
    assert len(short) > 1 and set(summary["short_counts"]) == set(short)
    lines = [line for line in (printed.out + printed.err).splitlines() if "fell short" in line]
    assert lines == [f"{len(short)} classes fell short of 40 near-OOD / 5 contextual (e.g. "
                     f"{', '.join(short[:3])}): the full list is in {tmp_path / 'bank.summary.json'}"]


# ---- progress and warnings -----------------------------------------------------------------------------
def test_text_encoding_shows_a_progress_bar_for_many_texts_only(tiny_net, capsys, monkeypatch):
    import openood_immuno.models.clip_net as clip_net

    monkeypatch.setattr(clip_net, "_PROGRESS_MIN_PROMPTS", 300)
    tiny_net.encode_text([f"progress word {i}" for i in range(299)], templates=())
    assert "text encoding" not in capsys.readouterr().err
    tiny_net.encode_text([f"progress word {i}" for i in range(300)], templates=())
    assert "text encoding (300 prompts)" in capsys.readouterr().err
    monkeypatch.setattr(tiny_net, "progress", False)
    tiny_net.encode_text([f"quiet word {i}" for i in range(400)], templates=())
    assert "text encoding" not in capsys.readouterr().err


def test_random_init_warning_prints_once_per_process():
    code = ("import logging; logging.basicConfig(level=logging.WARNING)\n"
            "from openood_immuno import build_clip_net\n"
            "for _ in range(3): build_clip_net('ImmunoTiny-ViT', 'none', ['cat'], text_cache=False)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"})
    assert proc.stderr.count("Scores are meaningless") == 1, proc.stderr
    assert "No pretrained weights loaded" not in proc.stderr and "RANDOM-INIT" not in proc.stderr


def test_console_prints_a_warning_as_one_line(tmp_path, capsys, monkeypatch):
    import warnings

    def warn(*args):
        warnings.warn("openood-immuno: a warning the user should see")
        raise ValueError("stop here")

    monkeypatch.setattr(openood_immuno.experiments.report, "write_report", warn)
    assert run(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "openood-immuno: warning: a warning the user should see"
    assert err[1].startswith("openood-immuno: error: stop here") and len(err) == 2
