"""GL-MCM (Miyai et al., "GL-MCM: Global and Local Maximum Concept Matching for Zero-Shot
Out-of-Distribution Detection", IJCV 2025): :mod:`.params` (its parameters), :mod:`.scorer`
(the fitted scorer); the score itself is :func:`openood_immuno.scores.glmcm.glmcm_score`."""
from .params import GLMCMParams
from .scorer import GLMCMScorer

__all__ = ["GLMCMParams", "GLMCMScorer"]
