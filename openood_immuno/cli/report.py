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
    """One line per run from the leaderboards just written beside ``report_md`` (read by their
    headers: OpenOOD's benchmark in leaderboard.csv, the MOS four in leaderboard_mos.csv), a line
    for the runs of ``--benchmark immuno_vlm`` (a table of report.md), then the files written."""
    import csv

    from openood_immuno.experiments.immuno_vlm_table import HEADING as IMMUNO_VLM_HEADING

    folder = report_md.parent

    def read(name):
        path = folder / name
        if not path.is_file():
            return path, []
        with open(path, encoding="utf-8", newline="") as fh:
            return path, list(csv.DictReader(fh))

    def run_name(row):
        return row.get("Additional_Description", "").rpartition("run ")[2]

    board, rows = read("leaderboard.csv")
    lines = [f"{len(rows)} OpenOOD-benchmark run(s) (near / far AUROC):"]
    lines += [f"  {row.get('Postprocessor', '?')}: {row.get('Near-OOD_AUROC', '-')} / "
              f"{row.get('Far-OOD_AUROC', '-')}  ({run_name(row)})" for row in rows]
    mos_board, mos = read("leaderboard_mos.csv")
    if mos:
        lines.append(f"{len(mos)} MOS-four run(s) (average AUROC):")
        lines += [f"  {row.get('Postprocessor', '?')}: {row.get('Average_AUROC', '-')}  ({run_name(row)})"
                  for row in mos]
    if IMMUNO_VLM_HEADING in report_md.read_text(encoding="utf-8"):
        lines.append("--benchmark immuno_vlm runs: their table is in report.md")
    plots = sorted(folder.glob("*.png"))
    lines += ["wrote:", f"  report: {report_md}", f"  leaderboard: {board}"]
    lines += [f"  leaderboard (MOS four): {mos_board}"] if mos else []
    lines += [f"  plots: {len(plots)} in {folder}" if plots else "  plots: none"]
    return lines


def run(args) -> int:
    from openood_immuno.experiments.report import write_report

    path = write_report(args.results_dir, args.out)
    if args.print_report:
        print(path.read_text(encoding="utf-8"))
    print("\n".join(summary_lines(path)))
    return 0
