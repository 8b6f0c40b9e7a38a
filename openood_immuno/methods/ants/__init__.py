"""ANTS (Zhu et al., "ANTS: Shaping the Adaptive Negative Textual Space by MLLM for OOD
Detection"), one module per concept:

* :mod:`.params` -- every parameter with its default (NegLabel's fields plus ANTS's);
* :mod:`.mining` -- negative-image mining with the adaptive threshold (Sec. 4.2), or fixed, or off;
* :mod:`.sentences` -- the sentences of one ENS update (the code's rule, or Eq. 7);
* :mod:`.ens` -- the ENS bank (MLLM descriptions of mined images);
* :mod:`.vsnl` -- the VSNL bank (MLLM names of visually similar classes);
* :mod:`.adaptive` -- the adaptive fusion weight lambda;
* :mod:`.scorer` -- the fitted scorer over a test stream (and MLLM loading; backends: :mod:`openood_immuno.llm`);
* :mod:`.images` -- images of an OpenOOD batch tensor for the MLLM;

The bank scores themselves are pure functions in :mod:`openood_immuno.scores.ants`.
"""
from .adaptive import RunningMean, adaptive_lambda, fuse
from .ens import ENSBank
from .images import images_from_tensor
from .mining import NegativeImageMiner, histogram_jump_threshold
from .params import ANTSParams
from .scorer import ANTSScorer, load_mllm
from .sentences import ens_sentences, select_sentences
from .vsnl import VSNLBank

__all__ = ["RunningMean", "adaptive_lambda", "fuse", "ENSBank", "VSNLBank", "NegativeImageMiner",
           "histogram_jump_threshold", "ANTSParams", "ANTSScorer", "load_mllm",
           "images_from_tensor", "ens_sentences", "select_sentences"]
