"""OpenOOD's classic post-hoc postprocessors (MSP, energy, max logit, GEN, GradNorm, ReAct, ASH,
SCALE, DICE, KNN, ViM, MDS, RMDS, KLM, SHE, fDBD, NCI) on the CLIP net's linear head, from cached
features: :mod:`.params` (their parameters, OpenOOD's defaults), :mod:`.scorers` (fitted scorers);
the formulas are :mod:`openood_immuno.scores.classic`."""
from .scorers import CLASSIC, ClassicScorer

__all__ = ["CLASSIC", "ClassicScorer"]
