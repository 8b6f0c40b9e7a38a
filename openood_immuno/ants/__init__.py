"""ANTS (Zhu et al., "ANTS: Shaping the Adaptive Negative Textual Space by MLLM for OOD
Detection"): negative-image mining, ENS / VSNL banks, adaptive fusion (MLLM backends: :mod:`openood_immuno.llm`)."""
from .adaptive import RunningMean, adaptive_lambda, fuse
from .banks import ENSBank, VSNLBank
from .mining import NegativeImageMiner, histogram_jump_threshold
from .online import ANTSOnline

__all__ = ["RunningMean", "adaptive_lambda", "fuse", "ENSBank", "VSNLBank", "NegativeImageMiner",
           "histogram_jump_threshold", "ANTSOnline"]
