"""EOE (Cao et al., ICML 2024): :mod:`.params`, :mod:`.prompts` (the authors' prompts, data in
``prompts.txt``), :mod:`.envision` (asking the LLM, cache), :mod:`.names` (parsing, clean-up,
names files), :mod:`.scorer` (the fitted scorer)."""
from .envision import Envisioned, envision
from .names import clean_names, parse_answer, read_names, write_names
from .params import EOEParams
from .prompts import TASKS, default_count, first_prompts, follow_up_count, follow_up_prompt
from .scorer import EOEScorer

__all__ = ["Envisioned", "envision", "clean_names", "parse_answer", "read_names", "write_names",
           "EOEParams", "TASKS", "default_count", "first_prompts", "follow_up_count",
           "follow_up_prompt", "EOEScorer"]
