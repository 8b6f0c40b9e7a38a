"""Parameters of CSP (the only place their defaults live). Defaults = the authors' ImageNet
config and code (MengyuanChen21/NeurIPS2024-CSP, ``custom_config/clip-ViT-B16.py``,
``mmcls/models/classifiers/multi_modal.py``, ``mmcls/models/ood/clip_ood.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from openood_immuno.core.params import Params, param
from openood_immuno.methods.neglabel.params import LEXNAME
from .pool import ADJ_TEMPLATES, CSP_EXCLUDED_LEXNAMES, NOUN_TEMPLATES, SUPERCLASS_TEMPLATES


@dataclass(frozen=True)
class CSPParams(Params):
    """CSP: NegLabel's mining over nouns + superclass-conjugated adjectives, NegLabel's grouped score."""

    neg_ratio: float = param(0.15, "share of each pool (nouns, phrases) kept as negatives "
                             "(authors' neg_topk)", low=0, high=1, low_open=True,
                             sweep=(0.05, 0.1, 0.15, 0.2))
    quantile: float = param(0.95, "eta of d_j = quantile over ID classes of cos(candidate, class)",
                            low=0, high=1, sweep=(0.9, 0.95, 0.99))
    duplicate_cos: float = param(0.95, "a candidate whose max cos to an ID class exceeds this gets "
                                 "d_j = 1 (never kept)", low=-1, high=1)
    id_templates: Tuple[str, ...] = param(NOUN_TEMPLATES, "prompts of the ID class names, averaged",
                                          placeholder="{}", nonempty=True)
    noun_templates: Tuple[str, ...] = param(NOUN_TEMPLATES, "prompts of the noun candidates, averaged",
                                            placeholder="{}", nonempty=True)
    adj_templates: Tuple[str, ...] = param(ADJ_TEMPLATES, "prompts of the conjugated adjective "
                                           "phrases, averaged", placeholder="{}", nonempty=True)
    superclass_templates: Tuple[str, ...] = param(SUPERCLASS_TEMPLATES, "superclasses an adjective "
                                                  "is conjugated with (one drawn per adjective)",
                                                  placeholder="{}", nonempty=True)
    conjugation_seed: int = param(0, "seed of Python's random drawing each adjective's superclass",
                                  low=0)
    exclude_lexnames: Tuple[str, ...] = param(CSP_EXCLUDED_LEXNAMES,
                                              "WordNet lexicographer files left out of the corpus",
                                              pattern=LEXNAME)
    corpus_limit: int = param(0, "> 0: mine on that many candidates only (smoke runs, tests)", low=0)
    neg_labels_file: str = param("", "a label-list file (NegLabel's format, phrases as adj lines): "
                                 "skip mining")
    logit_scale: float = param(100.0, "logits = logit_scale * cos", low=0, low_open=True)
    n_groups: int = param(100, "K groups of negatives in the score", low=1, sweep=(10, 50, 100, 200))
    group_seed: int = param(0, "seed of the fixed permutation of the negatives", low=0)

    BANK = ("neg_ratio", "quantile", "duplicate_cos", "id_templates", "noun_templates",
            "adj_templates", "superclass_templates", "conjugation_seed", "exclude_lexnames",
            "corpus_limit", "neg_labels_file")
    """The parameters the text banks depend on (the others only change the score)."""
