"""Parameters of NegLabel (the only place their defaults live). Defaults = the authors' ImageNet
config (NegLabel repository, ``custom_config/clip.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from openood_immuno.core.params import ParamError, Params, param
from .corpus import NEGLABEL_EXCLUDED_LEXNAMES
from .mining import ADJ_TEMPLATE, ID_TEMPLATE, NOUN_TEMPLATE

LEXNAME = r"(noun|verb|adj|adv)\.\w+"


@dataclass(frozen=True)
class NegLabelParams(Params):
    """NegLabel: WordNet corpus, 0.95-quantile mining of 10k negatives, grouped ID softmax mass."""

    n_neg_labels: int = param(10_000, "M negative labels, split between nouns and adjectives by pool "
                              "size", low=1, sweep=(5000, 10_000, 20_000),
                              means=("m", "num_neg_labels", "num_negatives", "negatives", "n_negatives"))
    neg_fraction: float = param(0.0, "0: keep n_neg_labels in all, split by pool size; > 0: keep "
                                "int(neg_fraction * pool size) of each pool, n_neg_labels unused "
                                "(the NegLabel code's neg_topk: 0.15)", low=0, high=1, high_open=True)
    quantile: float = param(0.95, "eta of d_j = quantile over ID classes of cos(candidate, class)",
                            low=0, high=1, sweep=(0.9, 0.95, 0.99), means=("eta", "percentile"))
    id_template: str = param(ID_TEMPLATE, "prompt of the ID class names", placeholder="{}")
    noun_template: str = param(NOUN_TEMPLATE, "prompt of the noun candidates", placeholder="{}")
    adj_template: str = param(ADJ_TEMPLATE, "prompt of the adjective candidates", placeholder="{}")
    exclude_lexnames: Tuple[str, ...] = param(NEGLABEL_EXCLUDED_LEXNAMES,
                                              "WordNet lexicographer files left out of the corpus",
                                              pattern=LEXNAME)
    corpus_limit: int = param(0, "> 0: mine on that many candidates only (smoke runs, tests)", low=0)
    neg_labels_file: str = param("", "a file from `openood-immuno neglabels --out`: skip mining")
    logit_scale: float = param(100.0, "logits = logit_scale * cos", low=0, low_open=True,
                              means=("scale", "inverse_temperature"))
    n_groups: int = param(100, "K groups of negatives in the score", low=1, sweep=(10, 50, 100, 200),
                         means=("k", "groups", "num_groups", "ngroups"))
    group_seed: int = param(0, "seed of the fixed permutation of the negatives", low=0)

    def check(self) -> None:
        # what mining would refuse after the model is built, refused when the values are read
        if self.neg_labels_file or self.neg_fraction > 0:   # a file, or counts set by the pools
            return
        if 0 < self.corpus_limit < self.n_neg_labels:
            raise ParamError(f"n_neg_labels ({self.n_neg_labels}) exceeds corpus_limit ({self.corpus_limit}), "
                             "the candidate words mined from: lower n_neg_labels or raise corpus_limit "
                             "(0 = all of WordNet)")
        if self.n_groups > self.n_neg_labels:
            raise ParamError(f"n_groups ({self.n_groups}) exceeds n_neg_labels ({self.n_neg_labels}): each "
                             "group needs at least one negative label; lower n_groups")

    def resources(self) -> tuple[str, ...]:
        return () if self.neg_labels_file else ("wordnet",)   # the mining corpus

    BANK = ("n_neg_labels", "neg_fraction", "quantile", "id_template", "noun_template", "adj_template",
            "exclude_lexnames", "corpus_limit", "neg_labels_file")
    """The parameters the text banks depend on (the others only change the score)."""
