"""What a falsification run says: means and paired deltas over seeds (:func:`summarize`), the
decisive questions on ``immuno`` vs ``immuno_no_antibodies`` (:func:`verdicts`, a two-sided paired
t-test over the training seeds) and the claim's overall state (:func:`overall_verdict`); the rule
is stated in docs/immuno_vlm.md ("Falsification")."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .falsification import FalsificationResult
from .variants import NO_ANTIBODIES, REFERENCE

#: fewer training seeds than this: the report measures, but gives no verdict
MIN_VERDICT_SEEDS = 5


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    if np.isnan(a).all():
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize(result: FalsificationResult) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """``{"value": {variant: {metric: (mean, std)}}, "delta": {variant: {metric: (mean, std)}}}``:
    std is the sample standard deviation over seeds (ddof 1); deltas are paired per seed,
    ``variant - immuno``."""
    ref = result.per_seed[REFERENCE]
    out: dict = {"value": {}, "delta": {}}
    for v in result.variants:
        rows = result.per_seed[v.label]
        out["value"][v.label] = {m: _mean_std([rows[s][m] for s in result.seeds]) for m in result.metrics}
        if v.label != REFERENCE:
            out["delta"][v.label] = {m: _mean_std([rows[s][m] - ref[s][m] for s in result.seeds])
                                     for m in result.metrics}
    return out


@dataclass(frozen=True)
class Verdict:
    """One question of the test, its measured paired delta and the answer on this run."""

    question: str
    metric: str
    delta: tuple[float, float]
    answer: str


def _significant(delta: tuple[float, float], n: int, level: float = 0.05) -> bool:
    """A two-sided paired t-test of ``mean != 0`` at ``level`` over ``n`` seeds:
    ``|mean| > t_{1 - level/2, n-1} * std / sqrt(n)``; never with one seed."""
    from scipy.stats import t

    mean, std = delta
    if n < 2:
        return False
    return abs(mean) > float(t.ppf(1 - level / 2, n - 1)) * std / math.sqrt(n)


def verdicts(result: FalsificationResult, acc_tolerance: float = 1.0,
             min_seeds: int = MIN_VERDICT_SEEDS) -> list[Verdict]:
    """The decisive questions on the pair ``immuno`` vs ``immuno_no_antibodies`` (deltas =
    no antibodies - immuno; see docs/immuno_vlm.md, "Falsification"):

    1. do the antibodies improve near-OOD detection? (AUROC_near delta < 0 and significant: yes;
       delta >= 0: no, the claim is falsified on this run; otherwise inconclusive)
    2. do they lower the classifier's confidence on OOD? (mean max-softmax over all OOD sets;
       the ID delta is given beside it: a drop on ID too is no rejection of OOD)
    3. do they cost ID accuracy? (ACC delta > ``acc_tolerance`` points and significant: yes,
       the claim is falsified on this run)

    Significant = a two-sided paired t-test over the seeds at 5% (:func:`_significant`). With
    fewer than ``min_seeds`` training seeds (5, the review's minimum) every answer is "no
    verdict" with the reason; the deltas are still measured.
    """
    if NO_ANTIBODIES not in result.per_seed:
        return []
    n = len(result.seeds)
    if n < min_seeds:
        out = verdicts(result, acc_tolerance, min_seeds=1)
        why = f"no verdict: {n} training seed{'s' if n != 1 else ''}, a verdict needs at least {min_seeds}"
        return [Verdict(v.question, v.metric, v.delta, why) for v in out]
    ref, off = result.per_seed[REFERENCE], result.per_seed[NO_ANTIBODIES]
    msp_keys = [m for m in result.metrics if m.startswith("msp_ood/")]

    def delta(metric: Callable[[dict], float]) -> tuple[float, float]:
        return _mean_std([metric(off[s]) - metric(ref[s]) for s in result.seeds])

    out = []
    d = delta(lambda r: r["AUROC_near"])
    answer = ("yes" if d[0] < 0 and _significant(d, n) else
              "no: falsified on this run" if d[0] >= 0 else "inconclusive (not significant)")
    out.append(Verdict("antibodies improve near-OOD AUROC", "AUROC_near", d, answer))
    d = delta(lambda r: float(np.mean([r[k] for k in msp_keys])))
    d_id = delta(lambda r: r["msp_id"])
    answer = ("yes" if d[0] > 0 and _significant(d, n) else
              "no" if d[0] <= 0 else "inconclusive (not significant)")
    answer += f" (ID max-softmax delta {_fmt(*d_id, signed=True)})"
    out.append(Verdict("antibodies lower the classifier's max-softmax on OOD (the review's confidence "
                       "criterion)", "msp_ood (mean)", d, answer))
    d = delta(lambda r: r["ACC"])
    cost = (d[0] - acc_tolerance, d[1])
    answer = ("yes: falsified on this run" if d[0] > acc_tolerance and _significant(cost, n) else
              "no" if d[0] <= acc_tolerance else "inconclusive (not significant)")
    out.append(Verdict(f"antibodies cost more than {acc_tolerance:g} point of ID accuracy", "ACC", d, answer))
    return out


def overall_verdict(result: FalsificationResult, acc_tolerance: float = 1.0,
                    min_seeds: int = MIN_VERDICT_SEEDS) -> str:
    """The antibody claim on this run, from :func:`verdicts`: ``no verdict: ...`` (too few
    seeds), ``falsified`` (near-OOD AUROC not higher with the antibodies, or an ID accuracy
    cost), ``supported`` (higher and significant, no cost) or ``inconclusive``; the confidence
    criterion has its own line (:func:`~.falsification_report.falsification_markdown`)."""
    found = {v.metric: v.answer for v in verdicts(result, acc_tolerance, min_seeds)}
    if not found:
        return f"no verdict: no {NO_ANTIBODIES} variant to compare with"
    if found["AUROC_near"].startswith("no verdict"):
        return found["AUROC_near"]
    if found["AUROC_near"].startswith("no") or found["ACC"].startswith("yes"):
        return "falsified"
    if found["AUROC_near"] == "yes" and found["ACC"] == "no":
        return "supported"
    return "inconclusive (add seeds)"


# ---- formatting of numbers (verdict answers, and falsification_report's tables) -----------------
def _fmt(mean: float, std: Optional[float] = None, signed: bool = False) -> str:
    if math.isnan(mean):
        return "-"
    digits = 2 if abs(mean) >= 1 else 4
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return text if std is None or math.isnan(std) else f"{text} ± {std:.{digits}f}"
