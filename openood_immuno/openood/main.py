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

After the run, its status (:mod:`openood_immuno.core.status`: the postprocessor's ``status()``
and ``network.pretrained: none``) is marked in what OpenOOD wrote (:func:`mark_results`): a
``status`` column on every row of ``ood.csv``, a last ``openood-immuno status: ...`` line in
``log.txt`` and a first comment line in ``config.yml``; it is printed on stderr too. As with
``eval``, a degraded or partial run (e.g. ANTS whose MLLM cannot load offline) exits 3 unless
``--allow-degraded``; a stand-in (``NO MLLM``) or random-weights run exits 0, marked.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from typing import Optional, Sequence

from openood_immuno.core.status import RunStatus, run_status
from .configs import load, name_pattern, parse_config_name
from .network_params import NAME as CLIP, CLIPNetworkParams

STATUS_LINE = "openood-immuno status: "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", nargs="+", required=True, metavar="YML",
                        help="OpenOOD config files, merged in order; a name such as "
                             "imagenet_clip_mcm.yml (<id>_clip_<postprocessor>.yml) that is not a "
                             "file is built at run time")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs, e.g. --opts data_root ./data "
                             "network.model ViT-L-14 (same as main.py's --KEY VALUE)")
    parser.add_argument("--allow-degraded", action="store_true",
                        help="exit 0 even when the run is degraded or partial (e.g. ANTS without its "
                             "MLLM): it is marked so in ood.csv, log.txt and config.yml either way")


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


def _check_builtin_args(config) -> None:
    """OpenOOD's own class runs for its names (``knn``, ...) on this route: a parameter only our
    re-derivation reads (``NOT_IN_OPENOOD`` of its params class), set away from its default, would
    be ignored, and the run mislabelled."""
    from openood_immuno.postprocessors.registry import METHODS

    pp = config.get("postprocessor") or {}
    cls = METHODS.get(pp.get("method") or pp.get("name") or "")
    if cls is None or not cls.openood_builtin:
        return
    name = pp.get("name")
    params = cls.params_class.from_config(pp.get("postprocessor_args"), None, where=f"postprocessor '{name}'",
                                          prefix=f"{name}.")[0]
    default = cls.params_class()
    for key in getattr(cls.params_class, "NOT_IN_OPENOOD", ()):
        if params.get(key) != default.get(key):
            raise ValueError(f"postprocessor.postprocessor_args.{key}: {params.get(key)!r} is read by openood-immuno's "
                             f"'{name}' only, and this route runs OpenOOD's own '{name}', which would ignore it: "
                             f"use `openood-immuno eval --postprocessors {name} --pp-arg {name}.{key}=...` or "
                             f"Evaluator(postprocessor=openood_immuno.build_postprocessor('{name}', {key}=...))")


def check_run(config) -> None:
    """Bad input in one line before any model or image is loaded."""
    _check_builtin_args(config)
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


def _run_pipeline(config, built: list) -> None:
    """``get_pipeline(config).run()``, keeping the postprocessor it builds in ``built``."""
    from openood.pipelines import get_pipeline

    pipeline = get_pipeline(config)
    module = sys.modules.get(type(pipeline).__module__)
    original = getattr(module, "get_postprocessor", None)
    if original is None:
        pipeline.run()
        return

    def keep(cfg):
        pp = original(cfg)
        built.append(pp)
        return pp

    module.get_postprocessor = keep
    try:
        pipeline.run()
    finally:
        module.get_postprocessor = original


def finished_status(config, postprocessor) -> Optional[RunStatus]:
    """The status of a finished run: the postprocessor's ``status()`` (ours have one) and
    whether the CLIP net has random weights (all that is known of OpenOOD's own postprocessors);
    ``None`` when no postprocessor was seen (a multi-process run: it lived in other processes)."""
    from openood_immuno.models.loading import is_random_init

    network = config.get("network") or {}
    random_weights = network.get("name") == "clip" and is_random_init(network.get("pretrained", "openai"))
    status = getattr(postprocessor, "status", None)
    if callable(status):
        return run_status(status(), random_weights)
    return None if postprocessor is None else run_status({}, random_weights)


def mark_results(output_dir: str, status: RunStatus) -> list[str]:
    """Mark ``status`` in what OpenOOD's ``main.py`` wrote to ``output_dir``; the files marked.

    ``ood.csv`` gets a last ``status`` column (the label on every row; rewritten atomically),
    ``log.txt`` a last line ``openood-immuno status: LABEL``, ``config.yml`` a first comment
    line saying the same (a comment, so the file loads as before).
    """
    from openood_immuno.core.cache import atomic_write_text
    from openood_immuno.core.redact import redact

    marked = []
    line = STATUS_LINE + status.label
    path = os.path.join(output_dir, "ood.csv")
    if os.path.isfile(path):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if rows and rows[0] and rows[0][-1] != "status":
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(rows[0] + ["status"])
            writer.writerows(r + [status.label] for r in rows[1:] if r)
            atomic_write_text(buf.getvalue(), path)
            marked.append(path)
    path = os.path.join(output_dir, "log.txt")
    if os.path.isfile(path):   # OpenOOD printed the config (credentials of an MLLM URL included)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        atomic_write_text(redact(text) + line + "\n", path)
        marked.append(path)
    path = os.path.join(output_dir, "config.yml")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            text = redact(fh.read())
        if not text.startswith("# " + STATUS_LINE):
            atomic_write_text(f"# {line}\n{text}", path)
            marked.append(path)
    return marked


def exit_code(status: Optional[RunStatus], allow_degraded: bool, name: str = "run") -> int:
    """``eval``'s rule: 3 for a degraded or partial run unless ``allow_degraded``, else 0."""
    if status is not None and status.fails and not allow_degraded:
        print(f"openood_main: error: {status.tag(name)}: results are written and marked so; pass "
              "--allow-degraded to accept such a run (exit 0)", file=sys.stderr)
        return 3
    return 0


def prepare(config_files: Sequence[str], overrides: Sequence[str] = ()):
    """Register openood-immuno and build and check the config as ``main.py`` would; no model loaded."""
    from openood_immuno.core.ymlconfig import load_yml

    from .registry import register

    for path in config_files:  # a missing file or a YAML syntax error: file and line, before OpenOOD
        source = config_source(path)
        if isinstance(source, str):   # a file (a run-config name is built, not read)
            load_yml(source, "--config file")
    register()  # without OpenOOD, or with an incompatible one, this says how to fix it
    config = build_config(config_files, overrides)
    check_run(config)
    return config


def run(config, allow_degraded: bool = False) -> int:
    """OpenOOD's ``main.py`` on a prepared config: ``launch(main, num_gpus, ...)``; then the
    run's status is marked in its results (:func:`mark_results`) and decides the exit code
    (:func:`exit_code`)."""
    from openood.utils import launch

    built: list = []
    launch(_run_pipeline, config.num_gpus, num_machines=config.num_machines,
           machine_rank=config.machine_rank, dist_url="auto", args=(config, built))
    name = (config.get("postprocessor") or {}).get("name", "run")
    status = finished_status(config, built[-1] if built else None)
    if status is None:
        if not built and (config.num_gpus or 1) * (config.num_machines or 1) > 1:
            print(f"openood_main: warning: the status of {name} is not known here (it ran in "
                  "other processes): its results are not marked", file=sys.stderr)
        return 0
    if config.get("save_output", True):
        mark_results(config.output_dir, status)
    print(STATUS_LINE + status.tag(name), file=sys.stderr)
    return exit_code(status, allow_degraded, name)


def parse(argv: Sequence[str] | None = None):
    """``(config files, overrides)`` from ``main.py``'s command line plus ``--opts``."""
    parser = argparse.ArgumentParser(prog="python -m openood_immuno.openood.main", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    return args.config, list(rest) + _opts_to_args(args.opts), args.allow_degraded


def main(argv: Sequence[str] | None = None) -> int:
    """``main.py``'s command line: ``--config`` files, then ``--KEY VALUE`` / ``--opts`` overrides
    (and ``--allow-degraded``); the exit code of :func:`run`.

    Errors propagate (programmatic use and tests); ``python -m`` prints bad input in one line.
    """
    config_files, overrides, allow_degraded = parse(argv)
    return run(prepare(config_files, overrides), allow_degraded)


USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, ImportError, RuntimeError)

if __name__ == "__main__":
    try:
        files, opts, allow = parse()
        prepared = prepare(files, opts)
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        sys.exit(f"openood_main: error: {message}")
    sys.exit(run(prepared, allow))
