"""Check the package's layer contracts (``[importlinter]`` in setup.cfg) with import-linter.

    python scripts/lint_layers.py [--config setup.cfg]

import-linter reads a package from one folder, but the installed ``openood_immuno`` is assembled
from two source folders (``openood_immuno/`` and the repository's top-level ``postprocessors/``,
mapped to ``openood_immuno.postprocessors``; an editable install keeps them apart). So the modules
of the importable package are copied into a temporary folder in their installed shape, and
``lint-imports`` runs on that copy. Exit status: lint-imports' own (0 when every contract is kept).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_folder(name: str) -> Path:
    """The folder the importable package ``name`` is read from."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"lint_layers: package {name!r} is not importable: install the project first "
                         "(bash scripts/install.sh)")
    return Path(next(iter(spec.submodule_search_locations)))


def stage(dest: Path) -> Path:
    """``dest/openood_immuno`` laid out as installed (Python files only)."""
    only_py = shutil.ignore_patterns("__pycache__", "*.json", "*.txt", "*.yml", "*.pt")
    target = dest / "openood_immuno"
    shutil.copytree(package_folder("openood_immuno"), target, ignore=only_py)
    if not (target / "postprocessors").is_dir():
        shutil.copytree(package_folder("openood_immuno.postprocessors"), target / "postprocessors",
                        ignore=only_py)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "setup.cfg")
    args = parser.parse_args(argv)
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        raise SystemExit("lint_layers: lint-imports not found: pip install import-linter "
                         "(it is in the project's test extra)")
    with tempfile.TemporaryDirectory() as tmp:
        stage(Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp}
        env.pop("PYTHONSAFEPATH", None)
        return subprocess.run([lint, "--no-cache", str(args.config.resolve())], cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
