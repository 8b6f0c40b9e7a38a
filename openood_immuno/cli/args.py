"""Flags shared by several sub-commands and the parsers of their values.

Importing this module loads no torch, open_clip or transformers: ``--help`` and every check of
a flag's syntax run before any of them is loaded (``check_lists`` and ``net_from_args`` import
them when called).
"""
from __future__ import annotations

import argparse
import difflib
import os
from importlib import resources
from typing import Iterable, Sequence


class UsageError(ValueError):
    """Bad command-line input; :func:`openood_immuno.cli.run` prints it in one line (exit 2)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; ``(default: X)`` added once, and only where there is a value.

    A help text that already names its default (``default``) is left alone, and so are
    flags without a value to show (``None``, switches, empty lists).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS
                or default == [] or action.required or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


# the ID benchmarks of openood_immuno.data.benchmarks.BENCHMARKS (OpenOOD v1.5), written here so the
# parser imports no torch; a test checks they agree
ID_BENCHMARKS = ("imagenet", "imagenet200", "cifar10", "cifar100")

def postprocessor_names() -> list[str]:
    """Names of the shipped postprocessors: the yml file names of ``configs/postprocessors/``."""
    folder = resources.files("openood_immuno.configs") / "postprocessors"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".yml"))


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``''``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_postprocessors(text: str) -> list[str]:
    """``--postprocessors a,b`` -> ``['a', 'b']``; unknown or no names raise :class:`UsageError`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = postprocessor_names()
    if not names:
        raise UsageError(f"--postprocessors {text!r} names no postprocessor: pass one or more of "
                         f"{known}, comma-separated")
    for name in names:
        if name not in known:
            raise UsageError(f"--postprocessors: unknown postprocessor {name!r}{did_you_mean(name, known)}; "
                             f"available: {', '.join(known)}")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UsageError(f"--postprocessors names {duplicated} more than once: name each once")
    return names


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` -> ``[0, 1, 2]``."""
    items = [s.strip() for s in text.split(",")]
    bad = [s for s in items if not s.lstrip("-").isdigit()]
    if bad or not items:
        raise UsageError(f"--seeds {text!r}: {bad[0] if bad else text!r} is not an integer; pass "
                         "comma-separated integers, e.g. --seeds 0,1,2")
    seeds = [int(s) for s in items]
    if len(set(seeds)) < len(seeds):
        raise UsageError(f"--seeds {text!r} repeats a seed: name each seed once")
    return seeds


def parse_pp_args(items: Sequence[str], names: Sequence[str]) -> dict[str, dict]:
    """``NAME.KEY=VALUE`` (VALUE read as YAML) -> ``{NAME: {KEY: VALUE}}``.

    ``names`` are the postprocessors the command runs; a NAME outside them is refused. The
    values are checked by the postprocessor itself when it is built.
    """
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, key = target.strip().partition(".")
        if not sep or not dot or not name or not key.strip():
            raise UsageError(f"--pp-arg expects NAME.KEY=VALUE (e.g. immuno.epochs=5), got {item!r}")
        if name not in names:
            raise UsageError(f"--pp-arg {item!r} names {name!r}, which is not among the postprocessors "
                             f"run here {list(names)}{did_you_mean(name, names)}")
        try:
            out.setdefault(name, {})[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise UsageError(f"--pp-arg {item!r}: the value is not valid YAML ({reason}); quote "
                             "strings, e.g. immuno.antibody_bank='my bank.json'") from None
    return out


def add_pp_arg(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("--pp-arg", action="append", default=[], metavar="NAME.KEY=VALUE",
                        help=f"override a postprocessor argument of its yml (VALUE read as YAML), "
                             f"e.g. {example}; repeatable")


def add_model_args(parser: argparse.ArgumentParser, title: str | None = None) -> None:
    """``--model``, ``--pretrained``, ``--device`` (the CLIP net of :func:`net_from_args`)."""
    group = parser.add_argument_group(title) if title else parser
    group.add_argument("--model", default="ViT-B-16", help="open_clip model name or JSON config path")
    group.add_argument("--pretrained", default="openai",
                       help="open_clip tag, local checkpoint path, or 'none' (random init: smoke tests; "
                            "results are marked RANDOM WEIGHTS)")
    group.add_argument("--device", default="auto", help="torch device; auto: cuda when available, else cpu")


def check_pretrained_arg(args) -> None:
    """An empty ``--pretrained`` (an unset shell variable) is refused before any work, never read
    as random weights (those need an explicit ``none``)."""
    value = getattr(args, "pretrained", None)
    if isinstance(value, str) and not value.strip():
        raise UsageError(f"--pretrained is empty ({value!r}; an unset variable?): pass an open_clip tag "
                         "such as openai, a checkpoint path, or none for random weights")


def add_id_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", dest="id_name", default="imagenet", choices=ID_BENCHMARKS,
                        help="ID benchmark (its class names and image lists)")


def add_data_root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", required=True, help="OpenOOD data_root (holds benchmark_imglist/)")


def add_progress_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_loader_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=128, help="backbone batch size")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def net_from_args(args, class_names=None):
    """The CLIP net of ``--model/--pretrained/--device`` for ``class_names`` (default ``--id``)."""
    from openood_immuno.models.clip_net import build_clip_net

    return build_clip_net(args.model, args.pretrained, args.id_name if class_names is None else class_names,
                          device=resolve_device(args.device), progress=not args.no_progress)


def check_data_root(data_root: str) -> None:
    """``--data-root`` is a folder holding OpenOOD's ``benchmark_imglist/``."""
    if not os.path.isdir(data_root):
        what = "is not a folder" if os.path.exists(data_root) else "does not exist"
        raise UsageError(f"--data-root {data_root!r} {what}: pass OpenOOD's data_root (the folder "
                         "holding benchmark_imglist/)")
    if not os.path.isdir(os.path.join(data_root, "benchmark_imglist")):
        raise UsageError(f"--data-root {data_root!r} has no benchmark_imglist/ folder: pass OpenOOD's "
                         "data_root (the folder holding benchmark_imglist/ and the image folders)")


def check_lists(data_root: str, specs: Iterable) -> None:
    """Every list of ``specs`` (``ListSpec``) that this run needs exists under ``data_root``.

    Run before any model is built (the lists' content is checked by
    :func:`openood_immuno.experiments.runner.validate_benchmark`).
    """
    specs = list(specs)
    missing = [s.imglist for s in specs if not os.path.isfile(os.path.join(data_root, s.imglist))]
    if missing:
        raise UsageError(f"--data-root {data_root!r} lacks the image list(s) {missing} that this run "
                         "needs: check the folder, or drop what needs them (--extra-ood, the "
                         "postprocessors that train or calibrate)")
