"""Flags shared by several sub-commands and the parsers of their values.

Importing this module loads no torch, open_clip or transformers: ``--help`` and every check of
a flag's syntax run before any of them is loaded (``check_lists`` and ``net_from_args`` import
them when called).
"""
from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import sys
from importlib import resources
from typing import Iterable, Sequence

from openood_immuno.data.benchmarks import BENCHMARKS
from openood_immuno.experiments.variants import EVERY


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


SEED_MAX = 2**32 - 1   # numpy's seeds lie in [0, 2**32 - 1]


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """``--seeds 0,1,2`` -> ``[0, 1, 2]``: ASCII digits only (``int()`` would also read ``'١'``),
    each in ``[0, 2**32 - 1]`` (numpy's range), none repeated."""
    items = [s.strip() for s in text.split(",")]
    bad = [s for s in items if not re.fullmatch(r"[0-9]+", s)]
    if bad:
        raise UsageError(f"{option} {text!r}: {bad[0]!r} is not a non-negative integer in ASCII digits; "
                         f"pass comma-separated integers in [0, {SEED_MAX}], e.g. {option} 0,1,2")
    seeds = [int(s) for s in items]
    big = [s for s in seeds if s > SEED_MAX]
    if big:
        raise UsageError(f"{option} {text!r}: {big[0]} is past {SEED_MAX} (2**32 - 1, the largest seed "
                         "numpy accepts): pass smaller seeds")
    if len(set(seeds)) < len(seeds):
        raise UsageError(f"--seeds {text!r} repeats a seed: name each seed once")
    return seeds


def parse_pp_args(items: Sequence[str], names: Sequence[str], every: bool = False,
                  what: str = "postprocessors") -> dict[str, dict]:
    """``NAME.KEY=VALUE`` (VALUE read as YAML) -> ``{NAME: {KEY: VALUE}}``: the one override
    syntax of every command (``--pp-arg``).

    ``names`` are what NAME may be (``what``: the postprocessors the command runs, or the
    variants of falsify); with ``every``, NAME may also be ``*`` (every one of them that has
    KEY). A NAME outside them is refused. Keys and values are checked by the parameter
    dataclass of the postprocessor when it is resolved.
    """
    import yaml

    out: dict[str, dict] = {}
    allowed = [*names, EVERY] if every else list(names)
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, key = target.strip().partition(".")
        if not sep or not dot or not name or not key.strip():
            raise UsageError(f"--pp-arg expects NAME.KEY=VALUE (e.g. immuno.epochs=5), got {item!r}")
        if name not in allowed:
            also = f", or {EVERY} for every one that has the key" if every else ""
            raise UsageError(f"--pp-arg {item!r} names {name!r}, which is not among the {what} "
                             f"run here {list(names)}{also}{did_you_mean(name, names)}")
        try:
            out.setdefault(name, {})[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise UsageError(f"--pp-arg {item!r}: the value is not valid YAML ({reason}); quote "
                             "strings, e.g. immuno.antibody_bank='my bank.json'") from None
    return out


def set_as_pp_args(items: Sequence[str]) -> list[str]:
    """Items of the deprecated ``--set KEY=VALUE`` as ``--pp-arg *.KEY=VALUE``; prints one
    deprecation line (stderr) when there are any."""
    if items:
        print("openood-immuno: warning: --set KEY=VALUE is deprecated and will be removed in the next "
              "release: write --pp-arg '*.KEY=VALUE' (the same meaning)", file=sys.stderr)
    return [f"{EVERY}.{item}" for item in items]


def add_pp_arg(parser: argparse.ArgumentParser, example: str, name: str = "a postprocessor run") -> None:
    parser.add_argument("--pp-arg", action="append", default=[], metavar="NAME.KEY=VALUE",
                        help=f"override argument KEY of NAME ({name}) over its yml (VALUE read as "
                             f"YAML), e.g. {example}; repeatable")


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
    parser.add_argument("--id", dest="id_name", default="imagenet", choices=tuple(BENCHMARKS),
                        help="ID benchmark (its class names and image lists)")


def add_data_root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", required=True, help="OpenOOD data_root (holds benchmark_imglist/)")


def add_progress_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_loader_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=128, help="backbone batch size")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")


# every numeric flag of every command, by argparse dest: (lowest value, whether it is excluded);
# checked by :func:`check_numbers` once the command line is parsed
NUMBER_RULES = {"batch_size": (1, False), "score_batch_size": (1, False), "num_workers": (0, False),
                "n_near": (0, False), "n_contextual": (0, False), "seed": (0, False),
                "retries": (0, False), "max_new_tokens": (1, False), "timeout": (0, True),
                "temperature": (0, False), "n_neg_labels": (1, False), "corpus_limit": (0, False)}


def check_numbers(args: argparse.Namespace) -> None:
    """Every numeric flag of the parsed command in its range (``--score-batch-size 0``,
    ``--num-workers -1``, ``--timeout nan``): one :class:`UsageError` naming the flag, before any
    work. Floats must be finite; ``--seed`` is at most 2**32 - 1."""
    for dest, value in vars(args).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        flag = "--" + dest.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{flag} {value}: pass a finite number")
        rule = NUMBER_RULES.get(dest)
        if rule is None:
            continue
        low, open_low = rule
        if value < low or (open_low and value == low):
            kind = "an integer" if isinstance(value, int) else "a number"
            raise UsageError(f"{flag} {value}: must be {kind} {'>' if open_low else '>='} {low}")
        if dest == "seed" and value > SEED_MAX:
            raise UsageError(f"{flag} {value} is past {SEED_MAX} (2**32 - 1, the largest seed numpy "
                             "accepts): pass a smaller seed")


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


def check_out_file(path: str, option: str) -> None:
    """An output file path (``--out``): not a folder, not under a file, its folder writable;
    checked before any work (mining, generation)."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder: pass a file path, e.g. "
                         f"{os.path.join(path, 'neg_labels.txt')}")
    parent = os.path.dirname(os.path.abspath(path))
    existing = parent
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"{option} {path!r} cannot be created: {existing!r} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise UsageError(f"{option} {path!r} cannot be written: {existing!r} is not writable")


def check_data_root(data_root: str) -> None:
    """``--data-root`` is a folder holding OpenOOD's ``benchmark_imglist/``."""
    if not os.path.isdir(data_root):
        what = "is not a folder" if os.path.exists(data_root) else "does not exist"
        raise UsageError(f"--data-root {data_root!r} {what}: pass OpenOOD's data_root (the folder "
                         "holding benchmark_imglist/)")
    if not os.path.isdir(os.path.join(data_root, "benchmark_imglist")):
        raise UsageError(f"--data-root {data_root!r} has no benchmark_imglist/ folder: pass OpenOOD's "
                         "data_root (the folder holding benchmark_imglist/ and the image folders)")


def check_id_lists(data_root: str, id_name: str) -> None:
    """``--id NAME`` has its lists under ``data_root`` (``benchmark_imglist/NAME/``); else one
    line naming ``--id`` and the ID benchmarks this data_root does hold."""
    if os.path.isdir(os.path.join(data_root, "benchmark_imglist", id_name)):
        return
    held = [n for n in BENCHMARKS if os.path.isdir(os.path.join(data_root, "benchmark_imglist", n))]
    fix = (f"pass --id {held[0]}" + (f" (this data_root holds {', '.join(held)})" if len(held) > 1 else "")
           if held else "this data_root holds no ID benchmark's lists")
    raise UsageError(f"--id {id_name}: --data-root {data_root!r} has no benchmark_imglist/{id_name}/ lists: "
                     f"{fix}, or point --data-root at a data_root with {id_name} (OpenOOD's "
                     "download script fetches each benchmark's lists and images)")


def check_lists(data_root: str, specs: Iterable, id_name: str | None = None) -> None:
    """Every list of ``specs`` (``ListSpec``) that this run needs exists under ``data_root``;
    with ``id_name``, a data_root without that benchmark's lists is named as a ``--id`` problem
    first (:func:`check_id_lists`).

    Run before any model is built (the lists' content is checked by
    :func:`openood_immuno.experiments.runner.validate_benchmark`).
    """
    specs = list(specs)
    if id_name is not None:
        check_id_lists(data_root, id_name)
    missing = [s.imglist for s in specs if not os.path.isfile(os.path.join(data_root, s.imglist))]
    fixes = [s for s in specs if s.imglist in missing and getattr(s, "fix", "")]
    if fixes:   # a list OpenOOD does not ship (ImageNet-O): say how to make it
        raise UsageError(f"--data-root {data_root!r} lacks the image list {fixes[0].imglist!r} "
                         f"({fixes[0].name}) that this run needs: {fixes[0].fix}")
    if missing:
        raise UsageError(f"--data-root {data_root!r} lacks the image list(s) {missing} that this run "
                         "needs: check the folder, or drop what needs them (--extra-ood, the "
                         "postprocessors that train or calibrate)")
