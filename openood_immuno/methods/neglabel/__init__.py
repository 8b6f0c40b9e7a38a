"""NegLabel (Jiang et al., ICLR 2024): :mod:`.params`, :mod:`.corpus` (WordNet candidates),
:mod:`.mining` (negative-label mining), :mod:`.select` (mined, cached or imported list),
:mod:`.labelfile` (label-list files), :mod:`.scorer` (the fitted scorer)."""
from .corpus import NEGLABEL_EXCLUDED_LEXNAMES, limited_corpus, wordnet_corpus
from .labelfile import export_labels, import_labels
from .mining import (ADJ_TEMPLATE, ID_TEMPLATE, NOUN_TEMPLATE, NegativeLabels, fraction_budget,
                     lowest, mine_negative_labels, quantile_scores, split_budget)
from .params import NegLabelParams
from .scorer import NegLabelScorer
from .select import negative_labels

__all__ = ["NEGLABEL_EXCLUDED_LEXNAMES", "limited_corpus", "wordnet_corpus", "export_labels",
           "import_labels", "ADJ_TEMPLATE", "ID_TEMPLATE", "NOUN_TEMPLATE", "NegativeLabels",
           "fraction_budget", "lowest", "mine_negative_labels", "quantile_scores", "split_budget", "negative_labels",
           "NegLabelParams", "NegLabelScorer"]
