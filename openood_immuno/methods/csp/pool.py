"""CSP's candidate pool: NegLabel's WordNet nouns plus *conjugated* adjectives.

Chen et al., "Conjugated Semantic Pool Improves OOD Detection with Pre-trained Vision-Language
Models", NeurIPS 2024 (code: MengyuanChen21/NeurIPS2024-CSP, ``CLIPScalableClassifier`` in
``mmcls/models/classifiers/multi_modal.py``, lists in ``class_names.py``). The conjugated
semantic pool turns each adjective ``a`` into a phrase ``'a <superclass>'`` (``'lively
environment'``, ``'gigantic object'``): the superclass is drawn once per adjective, uniformly
from the 14 superclass templates, by Python's ``random`` seeded with 0. The facts below are the
authors' lists (``preset_noun_prompt_templates``, ``preset_adj_prompt_templates``,
``csp_templates``) and their ImageNet config's corpus exclusions
(``custom_config/clip-ViT-B16.py``: ``txt_exclude``; ``noun.animal`` and ``noun.food`` are
absent from their ``txtfiles/`` as from NegLabel's).
"""
from __future__ import annotations

import random
from typing import Sequence

from openood_immuno.methods.neglabel.corpus import limited_corpus, wordnet_corpus

#: prompts of the ID classes and of the noun candidates (each text's features averaged over all)
NOUN_TEMPLATES = ("a close-up photo of the nice {}.", "a photo with the nice {}.",
                  "a good photo with the nice {}.", "a photo of the nice {}.", "{}", "the {}",
                  "the good {}", "the nice {}")
#: prompts of the conjugated adjective phrases (features averaged over all)
ADJ_TEMPLATES = ("{}", "a nice photo of {}", "a good photo of {}", "a close-up photo of {}")
#: the superclasses an adjective is conjugated with (``csp_templates``)
SUPERCLASS_TEMPLATES = ("{} environment", "{} space", "{} object", "{} scene", "{} place",
                        "{} item", "{} area", "{} view", "{} thing", "{} pattern", "{} structure",
                        "{} landscape", "{} vista", "{} creature")
#: WordNet lexicographer files left out (NegLabel's two, plus the CSP config's ``txt_exclude``)
CSP_EXCLUDED_LEXNAMES = ("noun.animal", "noun.food", "noun.person", "noun.quantity",
                         "noun.group", "adj.pert")


def conjugate(adjectives: Sequence[str], superclass_templates: Sequence[str] = SUPERCLASS_TEMPLATES,
              seed: int = 0) -> list[str]:
    """One phrase per adjective: a superclass template drawn uniformly (``random.Random(seed)``,
    one draw per adjective in order, the sequence of the authors' ``random.seed(seed)`` +
    ``random.choice``) and filled with the adjective."""
    if not superclass_templates:
        raise ValueError("superclass_templates is empty: CSP needs at least one '{} <superclass>'")
    rng = random.Random(seed)
    return [rng.choice(list(superclass_templates)).format(a) for a in adjectives]


def csp_pool(exclude_lexnames: Sequence[str] = CSP_EXCLUDED_LEXNAMES,
             superclass_templates: Sequence[str] = SUPERCLASS_TEMPLATES, seed: int = 0,
             corpus_limit: int = 0) -> tuple[list[str], list[str]]:
    """``(nouns, conjugated adjective phrases)`` of WordNet 3.0 (NegLabel's corpus builder).

    The phrases are drawn over the whole adjective pool before ``corpus_limit`` thins both
    pools, so an adjective keeps its superclass whatever the limit.
    """
    nouns, adjectives = wordnet_corpus(tuple(exclude_lexnames))
    phrases = conjugate(adjectives, superclass_templates, seed)
    return limited_corpus(nouns, phrases, corpus_limit)
