"""The layer contracts of setup.cfg hold (import-linter on the installed package's modules), and a
module that imports upward breaks them."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "lint_layers.py"

pytest.importorskip("importlinter", reason="import-linter is in the project's test extra")


def _lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--config", str(config)], capture_output=True,
                          text=True, timeout=300)


def test_every_layer_contract_is_kept():
    done = _lint(ROOT / "setup.cfg")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path, monkeypatch):
    """The contract is not vacuous: a core module importing the CLI is reported."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import lint_layers
    finally:
        sys.path.remove(str(SCRIPT.parent))
    stage = lint_layers.stage(tmp_path)
    (stage / "core" / "upward_probe.py").write_text("import openood_immuno.cli.main\n")
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    done = subprocess.run([lint, "--no-cache", str(ROOT / "setup.cfg")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert done.returncode != 0 and "BROKEN" in done.stdout, done.stdout[-2000:]
    assert "openood_immuno.core.upward_probe" in done.stdout


def test_setup_cfg_lists_every_package_of_the_source_tree():
    """A non-editable install (CI's, a user's wheel) holds only the packages setup.cfg lists: a
    method package left out imports in an editable checkout and is missing everywhere else."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for init in (ROOT / "openood_immuno").rglob("__init__.py")}
    assert on_disk - listed == set(), "add these packages to setup.cfg [options] packages"
