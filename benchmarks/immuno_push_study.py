"""The push-term study of docs/immuno_vlm.md ("What the push term does"), with its control.

On the synthetic world of tests/test_immuno_synthetic.py in its two versions (OOD images built
from antibody directions: look-alikes; from random directions: far from every antibody), the
falsification computation (:func:`openood_immuno.experiments.falsification.run_falsification`)
fits, per training seed:

* ``immuno``: the full method (beta 5, auto margin, lambda 1);
* ``no_push``: beta 0, lambda kept at 1 (antibodies in DIS only);
* ``strong_push``: beta 20;
* ``immuno_no_antibodies``: the control, beta 0 and lambda 0 (no antibody anywhere).

Prints one markdown table, mean +- sample std over the seeds. Command (about 10 minutes on
2 shared cores):

    NLTK_DATA=../shared/nltk_data python benchmarks/immuno_push_study.py --seeds 0,1,2,3,4
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_immuno_synthetic import make_world  # noqa: E402  (the tests' synthetic world)

from openood_immuno.experiments.falsification import FalsificationData, Variant, run_falsification  # noqa: E402
from openood_immuno.experiments.falsification_verdict import summarize  # noqa: E402

VARIANTS = [Variant("immuno", "immuno", {}, "default push (beta 5, auto margin q 0.9, hard_k 8)"),
            Variant("no_push", "immuno", {"beta": 0.0}, "no push (beta 0, lambda kept at 1)"),
            Variant("strong_push", "immuno", {"beta": 20.0}, "strong push (beta 20)"),
            Variant("immuno_no_antibodies", "immuno", {"beta": 0.0, "lambda": 0.0},
                    "control: no antibodies (beta 0, lambda 0)")]
COLUMNS = (("AUROC_near", "AUROC"), ("FPR95_near", "FPR@95"), ("ACC", "ACC"),
           ("abcos_id_after", "nearest-antibody cos, ID (adapted)"),
           ("abcos_near_after", "nearest-antibody cos, OOD (adapted)"))


def study(ood_from: str, seeds: list[int], folder: str) -> dict:
    net, bank, id_features, test, ood = make_world(ood_from=ood_from)
    path = str(bank.save(Path(folder) / f"bank_{ood_from}.json"))
    data = FalsificationData(net, id_features, test, {"ood": ood}, ["ood"], ["ood"])
    return summarize(run_falsification(data, seeds, VARIANTS, {"*": {"antibody_bank": path}}))["value"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = ["| OOD built from | variant | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    with tempfile.TemporaryDirectory() as folder:
        for ood_from in ("antibodies", "random"):
            rows = study(ood_from, seeds, folder)
            for v in VARIANTS:
                r = rows[v.label]
                cells = [f"{r[m][0]:.2f} ± {r[m][1]:.2f}" if m in ("AUROC_near", "FPR95_near", "ACC")
                         else f"{r[m][0]:.3f} ± {r[m][1]:.3f}" for m, _ in COLUMNS]
                lines.append(f"| {ood_from} | {v.description} | " + " | ".join(cells) + " |")
    print(f"seeds {seeds}; mean ± sample std over seeds")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
