"""What the EVT decision rejects: a synthetic probe of the per-class Weibull fit.

Each of ``num_classes`` classes has its own DIS distribution (mean ~ U(0.05, 0.25), spread ~
U(0.015, 0.05): CLIP-like DIS scales; ``shape`` ``normal`` or ``skewed``, a mirrored Gumbel
with a long lower tail). The Weibulls (:class:`~.evt.EVTCalibrator`) are fitted on
``per_class`` scores of each class -- 5 is OpenOOD's ImageNet validation list
(``evt_fit: val``), hundreds are held-out training images (``evt_fit: heldout_train``) -- and
applied to ``test_per_class`` fresh scores of each class; :func:`id_rejection` is the share of
those with ``F_c(DIS) < tau``: the ID images the decision rejects. With ``censored`` fits it
should be ``tau``. Run the table with ``python -m openood_immuno.methods.immuno.evt_probe``.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np
import torch

from .evt import EVTCalibrator

SHAPES = ("normal", "skewed")


def class_scores(num_classes: int, per_class: int, rng: np.random.Generator, means: np.ndarray,
                 spreads: np.ndarray, shape: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` DIS scores of every class, and their labels."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    y = np.repeat(np.arange(num_classes), per_class)
    z = (rng.standard_normal(y.size) if shape == "normal"
         else -(rng.gumbel(size=y.size) - np.euler_gamma) / (np.pi / np.sqrt(6)))  # mean 0, std 1
    return means[y] + spreads[y] * z, y


def id_rejection(evt: EVTCalibrator, scores: np.ndarray, labels: np.ndarray, tau: float) -> float:
    """Share of ``scores`` (ID images, each scored under its own class) with ``F_c < tau``."""
    f = evt.cdf(torch.as_tensor(scores), torch.as_tensor(labels))
    return float((f < tau).double().mean())


def probe(num_classes: int = 1000, per_class: Sequence[int] = (5, 20, 50, 100, 200),
          tails: Sequence[float] = (0.25, 0.5, 1.0), taus: Sequence[float] = (0.05, 0.1),
          shapes: Sequence[str] = SHAPES, censored: Sequence[bool] = (True, False),
          test_per_class: int = 50, min_samples: int = 5, seed: int = 0) -> list[dict]:
    """One row per (shape, censored, per_class, tail): the ID rejection (%) at each ``tau``."""
    rows = []
    for shape in shapes:
        rng = np.random.default_rng(seed)
        means, spreads = rng.uniform(0.05, 0.25, num_classes), rng.uniform(0.015, 0.05, num_classes)
        test = class_scores(num_classes, test_per_class, rng, means, spreads, shape)
        for n in per_class:
            fit = class_scores(num_classes, n, rng, means, spreads, shape)
            for cens in censored:
                for tail in tails:
                    evt = EVTCalibrator.fit(torch.as_tensor(fit[0]), torch.as_tensor(fit[1]), num_classes,
                                            tail, min_samples, censored=cens)
                    rows.append({"shape": shape, "censored": cens, "per_class": n, "tail": tail,
                                 "pooled": int(evt.pooled.sum()),
                                 **{f"reject@{t:g}": 100 * id_rejection(evt, *test, t) for t in taus}})
    return rows


def markdown(rows: list[dict], taus: Sequence[float]) -> str:
    head = ["DIS shape", "fit", "images per class", "evt_tail",
            *[f"ID rejected at tau {t:g} (%)" for t in taus]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['shape']} | {'censored' if r['censored'] else 'tail only'} | {r['per_class']} | "
                     f"{r['tail']:g} | " + " | ".join(f"{r[f'reject@{t:g}']:.2f}" for t in taus) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    taus = (0.05, 0.1)
    print(markdown(probe(args.classes, taus=taus, seed=args.seed), taus))


if __name__ == "__main__":
    main()
