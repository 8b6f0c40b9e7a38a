"""The ``openood-immuno`` parser, :func:`main` (errors propagate) and :func:`run` (the console command)."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings

from . import antibodies, falsify, features, neglabels, openood_config, openood_main, report, vaccinate
from . import imagenet_o
from . import eval as evaluate
from .args import HelpFormatter, UsageError, check_numbers, check_pretrained_arg
from .errors import one_line

DESCRIPTION = """\
Vision-language OOD scorers (MCM, NegLabel, ANTS, Immuno-VLM) on OpenOOD v1.5 benchmarks.
Run 'openood-immuno COMMAND --help' for the flags of a command."""

COMMANDS = (evaluate, report, features, antibodies, vaccinate, falsify, neglabels, openood_main,
            openood_config, imagenet_o)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openood-immuno", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the command; errors propagate (for programmatic use and tests)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.passthrough_args = extra
    check_numbers(args)
    check_pretrained_arg(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _SAID.clear()
    for handler in logging.getLogger().handlers:  # the console handler of basicConfig only
        if type(handler) is logging.StreamHandler and not any(isinstance(f, _SaidOnce) for f in handler.filters):
            handler.addFilter(_SaidOnce())
    logging.getLogger("openood_immuno").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from openood_immuno.core.progress import silenced_progress_bars

    with silenced_progress_bars(getattr(args, "no_progress", False)):
        return args.func(args)


_SAID: set[str] = set()   # warnings and WARNING/ERROR log lines already shown by this command


def _said_before(text: str) -> bool:
    key = text.strip().removeprefix("openood-immuno: ")
    seen = key in _SAID
    _SAID.add(key)
    return seen


class _SaidOnce(logging.Filter):
    """A WARNING or ERROR log line is shown once per process, and not again as a warning (a
    degraded run said it was degraded once, not once per list, per seed and per channel)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING or not _said_before(record.getMessage())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line ``openood-immuno: warning: ...`` (no source line), once per process
    (also when the same text was logged as a WARNING or ERROR)."""
    text = str(message).removeprefix("openood-immuno: ")
    if _said_before(text):
        return
    print(f"openood-immuno: warning: {text}", file=sys.stderr if file is None else file)


def run(argv=None) -> int:
    """The ``openood-immuno`` console command: :func:`main`, every error in one line (exit 2).

    Ctrl-C prints ``openood-immuno: interrupted`` and exits 130; ``--verbose`` re-raises
    errors with their traceback. Warnings print as ``openood-immuno: warning: ...``, each once.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "-v" in argv or "--verbose" in argv
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return main(argv)
    except KeyboardInterrupt:
        if verbose:
            raise
        print("\nopenood-immuno: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every error becomes one line: the promise of the console command
        if verbose:
            raise
        hint = "" if isinstance(exc, UsageError) else " (--verbose shows the traceback)"
        print(f"openood-immuno: error: {one_line(exc)}{hint}", file=sys.stderr)
        return 2
