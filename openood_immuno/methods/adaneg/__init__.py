"""AdaNeg (Zhang & Zhang, NeurIPS 2024): :mod:`.params`, :mod:`.memory` (the test-time feature
memory), :mod:`.scorer` (the fitted scorer over a stream). The formulas are pure functions in
:mod:`openood_immuno.scores.adaneg`; the static negatives and S_nl are NegLabel's
(:mod:`openood_immuno.methods.neglabel`)."""
from .memory import FeatureMemory
from .params import CAPACITY_RULES, AdaNegParams
from .scorer import AdaNegScorer

__all__ = ["FeatureMemory", "CAPACITY_RULES", "AdaNegParams", "AdaNegScorer"]
