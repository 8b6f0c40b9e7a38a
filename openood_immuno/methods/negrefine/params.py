"""Parameters of NegRefine (the only place their defaults live). Defaults = the authors' ImageNet
run (ah-ansari/NegRefine ``scripts/imagenet.sh`` -> ``src/clip_ood.py``, ``src/create_negs.py``,
``src/neg_filter.py``), except ``llm`` (no network by default: give a model or a filtered
labels file; the authors': Qwen/Qwen2.5-14B-Instruct-1M) and ``llm_temperature`` (greedy; see
docs/negrefine.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from openood_immuno.core.params import param
from openood_immuno.llm.params import ChatLLMParams
from openood_immuno.methods.csp.params import CSPParams
from openood_immuno.methods.csp.pool import NOUN_TEMPLATES


@dataclass(frozen=True)
class NegRefineParams(CSPParams, ChatLLMParams):
    """NegRefine: CSP's negatives (CSPParams' fields; the max-cosine rule, ``quantile`` 1) filtered
    by an LLM; S = NegLabel's grouped score + w * the multi-matching score."""

    SWEEP_EXCLUDE = ("neg_ratio", "quantile")   # the bank's grids: each point would re-ask the LLM

    # ---- initial negatives: CSP's mining (create_negs.py), its fields with these changes ----
    quantile: float = param(1.0, "eta of d_j = quantile over ID classes of cos(candidate, class); "
                            "1 = the max (authors' pencentile=1)", low=0, high=1)
    noun_templates: Tuple[str, ...] = param(NOUN_TEMPLATES, "prompts of the noun negatives and of "
                                            "the multi-matching texts, averaged",
                                            placeholder="{}", nonempty=True)
    neg_labels_file: str = param("", "an initial label list (NegLabel's format): skip mining, "
                                 "still filter")
    # ---- the LLM filter (neg_filter.py) ----
    filtered_labels_file: str = param("", "a filtered label list (NegLabel's format): skip mining "
                                      "and the LLM")
    top_matches: int = param(10, "ID classes each negative is checked against (subcategory "
                             "question), by raw-text cosine", low=1)
    llm: str = param("none", "hf:NAME_OR_PATH | openai:MODEL@URL | openai:URL | none "
                     "(authors: Qwen/Qwen2.5-14B-Instruct-1M)")
    llm_max_new_tokens: int = param(512, "tokens per answer (authors' max_new_tokens)", low=1)
    # ---- the score (clip_ood.py) ----
    # logit_scale, n_groups, group_seed: CSP's (NegLabel's grouped score, same defaults)
    k_pos: int = param(5, "top ID classes per image in the multi-matching texts (at most C)", low=1)
    k_neg: int = param(5, "top negatives per image in the multi-matching texts", low=1)
    mm_weight: float = param(2.0, "weight w of the multi-matching score", low=0,
                             sweep=(0.0, 1.0, 2.0, 4.0))

    BANK = ("neg_ratio", "quantile", "duplicate_cos", "id_templates", "noun_templates",
            "adj_templates", "superclass_templates", "conjugation_seed", "exclude_lexnames",
            "corpus_limit", "neg_labels_file", "filtered_labels_file", "top_matches",
            *ChatLLMParams.LLM_FIELDS)
    """The parameters the text banks depend on (the others only change the score)."""

    def resources(self) -> tuple[str, ...]:
        return () if self.filtered_labels_file or self.neg_labels_file else ("wordnet",)
