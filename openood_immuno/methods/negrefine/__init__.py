"""NegRefine (Ansari et al., ICCV 2025): :mod:`.params`, :mod:`.filter` (clean-up, the authors'
LLM questions, data in ``prompts.txt``, cache), :mod:`.scorer` (the fitted scorer). The initial
negatives are CSP's mining (:mod:`openood_immuno.methods.csp`) with NegRefine's values."""
from .filter import Refined, clean_words, is_yes, prompt_texts, question, refine, top_matches
from .params import NegRefineParams
from .scorer import NegRefineScorer

__all__ = ["Refined", "clean_words", "is_yes", "prompt_texts", "question", "refine", "top_matches",
           "NegRefineParams", "NegRefineScorer"]
