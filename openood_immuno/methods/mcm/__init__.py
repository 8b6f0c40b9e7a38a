"""MCM (Ming et al., "Delving into Out-of-Distribution Detection with Vision-Language
Representations", NeurIPS 2022): :mod:`.params` (its parameters), :mod:`.scorer` (the fitted
scorer); the score itself is :func:`openood_immuno.scores.mcm.mcm_score`."""
from .params import MCMParams
from .scorer import MCMScorer

__all__ = ["MCMParams", "MCMScorer"]
