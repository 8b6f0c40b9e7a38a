"""ANTS (Zhu et al., "ANTS: Shaping the Adaptive Negative Textual Space by MLLM for OOD
Detection"): negative-image mining, ENS / VSNL banks, adaptive fusion, MLLM backends."""
from .adaptive import RunningMean, adaptive_lambda, fuse
from .banks import ENSBank, VSNLBank
from .mining import NegativeImageMiner, histogram_jump_threshold
from .mllm import MLLMBackend, OpenAIVision, ScriptedBackend, TransformersVLM, build_backend
from .online import ANTSOnline
from .parsing import parse_description, parse_similar_names

__all__ = ["RunningMean", "adaptive_lambda", "fuse", "ENSBank", "VSNLBank", "NegativeImageMiner",
           "histogram_jump_threshold", "MLLMBackend", "OpenAIVision", "ScriptedBackend",
           "TransformersVLM", "build_backend", "ANTSOnline", "parse_description",
           "parse_similar_names"]
