"""``openood-immuno report``: markdown report, leaderboard CSV and plots of eval results."""
from __future__ import annotations

from .args import HelpFormatter

DESCRIPTION = """\
Collect the ood.csv tables that `openood-immuno eval` wrote under RESULTS_DIR into one
markdown report (report.md), a leaderboard CSV beside the published numbers, and plots."""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="markdown + leaderboard CSV + plots of eval results",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("results_dir", help="the --output-dir of `openood-immuno eval`")
    p.add_argument("--out", default=None, help="output folder (default: RESULTS_DIR/report)")
    p.set_defaults(func=run)


def run(args) -> int:
    from openood_immuno.experiments.report import write_report

    path = write_report(args.results_dir, args.out)
    print(path.read_text(encoding="utf-8"))
    print(f"report: {path}")
    return 0
