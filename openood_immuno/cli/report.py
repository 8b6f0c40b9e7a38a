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
    p.add_argument("--print", dest="print_report", action="store_true",
                   help="also print the whole report.md (default: a short summary and the paths written)")
    p.set_defaults(func=run)


def summary_lines(report_md) -> list[str]:
    """One line per run from the leaderboard.csv just written beside ``report_md`` (read by its
    header), then the files written: report.md, leaderboard.csv and the plots."""
    import csv

    folder = report_md.parent
    board = folder / "leaderboard.csv"
    with open(board, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = [f"{len(rows)} run(s) (near / far AUROC):"]
    for row in rows:
        run_name = row.get("Additional_Description", "").rpartition("run ")[2]
        lines.append(f"  {row.get('Postprocessor', '?')}: {row.get('Near-OOD_AUROC', '-')} / "
                     f"{row.get('Far-OOD_AUROC', '-')}  ({run_name})")
    plots = sorted(folder.glob("*.png"))
    lines += ["wrote:", f"  report: {report_md}", f"  leaderboard: {board}",
              f"  plots: {len(plots)} in {folder}" if plots else "  plots: none"]
    return lines


def run(args) -> int:
    from openood_immuno.experiments.report import write_report

    path = write_report(args.results_dir, args.out)
    if args.print_report:
        print(path.read_text(encoding="utf-8"))
    print("\n".join(summary_lines(path)))
    return 0
