"""OpenOOD's ``main.py``, unchanged, with openood-immuno registered.

    python -m openood_immuno.openood.main --config A.yml [B.yml ...] [--KEY VALUE ...] [--opts KEY VALUE ...]

The arguments are ``main.py``'s: the yml files are merged in order, then ``--KEY VALUE``
overrides are applied (``--network.model ViT-L-14``, ``--data_root /data``; OpenOOD's
``Config.parse_args``: the key must exist), then ``'@{...}'`` references are resolved and
``output_dir`` becomes ``output_dir/exp_name`` (OpenOOD's ``setup_config``). ``--opts KEY VALUE
...`` gives the same overrides in a form an enclosing command line can pass through. A
``--config`` name that is not a file but a run-config name ``<id>_clip_<postprocessor>.yml``
(``imagenet_clip_mcm.yml``) is built at run time (:mod:`.configs`; a file of that name wins).
Fields of ``network.name: clip`` that no file sets are added with their defaults
(:class:`~.network_params.CLIPNetworkParams`) before the overrides, so ``--network.model`` works
on a stacked ``configs/networks/clip.yml`` too. Then :func:`openood_immuno.register` is
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

from .configs import load, name_pattern, parse_config_name
from .network_params import NAME as CLIP, CLIPNetworkParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", nargs="+", required=True, metavar="YML",
                        help="OpenOOD config files, merged in order; a name such as "
                             "imagenet_clip_mcm.yml (<id>_clip_<postprocessor>.yml) that is not a "
                             "file is built at run time")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs, e.g. --opts data_root ./data "
                             "network.model ViT-L-14 (same as main.py's --KEY VALUE)")


def config_source(name: str):
    """What OpenOOD's ``Config`` reads for ``--config name``: the file ``name`` when it exists,
    else the run config of a name ``<id>_clip_<postprocessor>.yml``, built now (a dict)."""
    if os.path.isfile(name):
        return name
    ours = parse_config_name(name)
    if ours is not None:
        return load(*ours)
    if os.path.isdir(name):
        raise FileNotFoundError(f"--config {name!r} is a folder: pass a yml file, or a run-config name "
                                f"{name_pattern()}")
    ours = parse_config_name(os.path.basename(name))
    if ours is not None:
        raise FileNotFoundError(f"--config {name!r} is not a file: the run config "
                                f"{os.path.basename(name)!r} is built when given by its bare name, or "
                                f"written with `openood-immuno openood-config {ours[1]} --id {ours[0]} "
                                f"--out {name}`")
    raise FileNotFoundError(f"--config {name!r} is neither a file nor a run-config name {name_pattern()}")


def with_network_defaults(config) -> None:
    """Add the ``network.name: clip`` fields that no file sets, so ``--network.KEY`` finds them."""
    network = config.get("network")
    if network is not None and network.get("name") == CLIP:
        for key, value in CLIPNetworkParams().as_args().items():
            if key not in network:
                network[key] = value


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

    config = merge_configs(*[Config(config_source(path)) for path in config_files])
    with_network_defaults(config)
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
    from .registry import register

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
