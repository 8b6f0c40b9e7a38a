"""Credentials in an MLLM URL (``http://user:password@host``) are sent, never written or printed."""
from pathlib import Path

from fake_endpoint import dead_port
from test_hardening_round3 import TINY, small_root  # noqa: F401  (fixture)

from openood_immuno.cli import run
from openood_immuno.core.redact import redact, redact_all


def test_redact_replaces_the_userinfo_of_every_url():
    assert redact("openai:m@http://user:pa%40ss@[::1]:8000/v1") == "openai:m@http://***@[::1]:8000/v1"
    assert redact("hf:Qwen/Qwen2-VL-2B-Instruct") == "hf:Qwen/Qwen2-VL-2B-Instruct"
    assert redact("a HTTPS://u@h/x and http://h/y@z") == "a HTTPS://***@h/x and http://h/y@z"   # '@' in a path stays
    assert redact_all({"mllm": ["http://a:b@h"], "n": 3}) == {"mllm": ["http://***@h"], "n": 3}


def test_an_ants_run_with_a_password_in_its_mllm_url_writes_it_nowhere(small_root, tmp_path, capsys):
    spec = f"openai:tiny@http://user:s3cret@127.0.0.1:{dead_port()}/v1"
    small = {"mllm": spec, "mllm_timeout_s": 2, "n_neg_labels": 120, "corpus_limit": 600, "n_groups": 12,
             "group_size": 10}
    out = tmp_path / "out"
    argv = ["eval", "--data-root", str(small_root), *TINY, "--postprocessors", "ants", "--engine", "builtin",
            "--num-workers", "0", "--output-dir", str(out), "--allow-degraded", "--no-progress",
            *[x for k, v in small.items() for x in ("--pp-arg", f"ants.{k}={v}")]]
    assert run(argv) == 0
    assert run(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    said = capsys.readouterr()
    assert "s3cret" not in said.out + said.err
    written = [p for p in Path(tmp_path).rglob("*") if p.is_file() and p.suffix in (".json", ".csv", ".md", ".txt")]
    assert any(p.name == "run.json" for p in written)
    for path in written:
        assert "s3cret" not in path.read_text(encoding="utf-8", errors="replace"), path
    run_json = next(p for p in written if p.name == "run.json").read_text()
    assert "http://***@127.0.0.1" in run_json
