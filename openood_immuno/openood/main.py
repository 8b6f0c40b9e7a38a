"""OpenOOD's ``main.py``, unchanged, with openood-immuno registered.

    python -m openood_immuno.openood.main --config A.yml [B.yml ...] [--KEY VALUE ...] [--opts KEY VALUE ...]

The arguments are ``main.py``'s: the yml files are merged in order, then ``--KEY VALUE``
overrides are applied (``--network.model ViT-L-14``, ``--data_root /data``; OpenOOD's
``Config.parse_args``: the key must exist), then ``'@{...}'`` references are resolved and
``output_dir`` becomes ``output_dir/exp_name`` (OpenOOD's ``setup_config``). ``--opts KEY VALUE
...`` gives the same overrides in a form an enclosing command line can pass through. A
``--config`` name that is not a file is looked up among the shipped run configs
(``configs/openood/<id>_clip_<postprocessor>.yml``). Then :func:`openood_immuno.register` is
called and OpenOOD's own pipeline runs (``get_pipeline(config).run()`` under
``openood.utils.launch``, which is all ``main.py`` does) and writes OpenOOD's results folder:
``config.yml``, ``log.txt``, ``ood.csv`` and ``scores/<dataset>.npz``.

On a CPU: ``network.name: clip`` places the net on ``network.device`` and never calls
``Tensor.cuda``; OpenOOD's ``test_ood`` pipeline and ``OODEvaluator`` touch images only through
``postprocessor.inference``, which ours run on the net's device. Nothing of OpenOOD is patched.
OpenOOD's own postprocessors (``msp``, ...) still move batches with ``Tensor.cuda`` and need a GPU.

Before anything is loaded, every image list of the config must exist, and the results folder
must not hold an ``ood.csv`` already (OpenOOD would append this run's rows to it).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .configs import shipped_config_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", nargs="+", required=True, metavar="YML",
                        help="OpenOOD config files, merged in order; a bare name such as "
                             "imagenet_clip_mcm.yml is one of the shipped configs/openood/ files")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs, e.g. --opts data_root ./data "
                             "network.model ViT-L-14 (same as main.py's --KEY VALUE)")


def resolve_config_path(name: str) -> str:
    if os.path.isfile(name):
        return name
    shipped = shipped_config_dir() / name
    if shipped.is_file():
        return str(shipped)
    raise FileNotFoundError(f"--config {name!r} is neither a file nor a shipped config: shipped ones are "
                            f"{sorted(p.name for p in shipped_config_dir().glob('*.yml'))[:6]}... "
                            f"in {shipped_config_dir()}")


def _opts_to_args(opts: Sequence[str]) -> list[str]:
    if len(opts) % 2:
        raise ValueError(f"--opts expects KEY VALUE pairs, got an odd number of items: {list(opts)}")
    out = []
    for key, value in zip(opts[::2], opts[1::2]):
        out += [f"--{key.lstrip('-')}", value]
    return out


def build_config(config_files: Sequence[str], overrides: Sequence[str] = ()):
    """OpenOOD's ``setup_config`` on explicit arguments: merge, ``parse_args``, ``parse_refs``."""
    from openood.utils.config import Config, merge_configs

    config = merge_configs(*[Config(resolve_config_path(path)) for path in config_files])
    try:
        config.parse_args(list(overrides))
    except KeyError as exc:
        raise KeyError(f"override --{exc.args[0]} names no key of the merged config: check its spelling "
                       "(OpenOOD only overrides keys that a --config file sets)") from None
    config.parse_refs()
    config.output_dir = os.path.join(config.output_dir, config.exp_name)
    return config


def _image_lists(config) -> list[tuple[str, str]]:
    found = []
    dataset, ood = config.get("dataset") or {}, config.get("ood_dataset") or {}
    for split in dataset.get("split_names") or []:
        found.append((f"dataset.{split}", dataset[split]["imglist_pth"]))
    for split in ood.get("split_names") or []:
        if split == "val":
            found.append(("ood_dataset.val", ood["val"]["imglist_pth"]))
            continue
        for name in ood[split]["datasets"]:
            found.append((f"ood_dataset.{split}.{name}", ood[split][name]["imglist_pth"]))
    return found


def check_run(config) -> None:
    """Bad input in one line before any model or image is loaded."""
    missing = [(key, path) for key, path in _image_lists(config) if not os.path.isfile(path)]
    if missing:
        key, path = missing[0]
        raise FileNotFoundError(f"{key}.imglist_pth {path!r} not found ({len(missing)} list(s) missing): "
                                "set --data_root to OpenOOD's data_root (the folder holding "
                                "benchmark_imglist/)")
    csv = os.path.join(config.output_dir, "ood.csv")
    if config.save_output and os.path.isfile(csv):
        raise FileExistsError(f"{csv} exists and OpenOOD would append this run's rows to it: remove that "
                              "folder or set --mark to a new name")


def _run_pipeline(config) -> None:
    from openood.pipelines import get_pipeline

    get_pipeline(config).run()


def prepare(config_files: Sequence[str], overrides: Sequence[str] = ()):
    """Register openood-immuno and build and check the config as ``main.py`` would; no model loaded."""
    from openood_immuno.core.ymlconfig import load_yml

    from .registry import register

    for path in config_files:  # a missing file or a YAML syntax error: file and line, before OpenOOD
        load_yml(resolve_config_path(path), "--config file")
    register()  # without OpenOOD, or with an incompatible one, this says how to fix it
    config = build_config(config_files, overrides)
    check_run(config)
    return config


def run(config) -> int:
    """OpenOOD's ``main.py`` on a prepared config: ``launch(main, num_gpus, ...)``."""
    from openood.utils import launch

    launch(_run_pipeline, config.num_gpus, num_machines=config.num_machines,
           machine_rank=config.machine_rank, dist_url="auto", args=(config,))
    return 0


def parse(argv: Sequence[str] | None = None):
    """``(config files, overrides)`` from ``main.py``'s command line plus ``--opts``."""
    parser = argparse.ArgumentParser(prog="python -m openood_immuno.openood.main", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    return args.config, list(rest) + _opts_to_args(args.opts)


def main(argv: Sequence[str] | None = None) -> int:
    """``main.py``'s command line: ``--config`` files, then ``--KEY VALUE`` / ``--opts`` overrides.

    Errors propagate (programmatic use and tests); ``python -m`` prints bad input in one line.
    """
    return run(prepare(*parse(argv)))


USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, ImportError, RuntimeError)

if __name__ == "__main__":
    try:
        prepared = prepare(*parse())
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        sys.exit(f"openood_main: error: {message}")
    sys.exit(run(prepared))
