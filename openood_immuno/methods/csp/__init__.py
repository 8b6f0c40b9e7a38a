"""CSP (Chen et al., NeurIPS 2024): :mod:`.params`, :mod:`.pool` (nouns + conjugated adjectives,
the authors' templates and superclasses), :mod:`.mining` (selection), :mod:`.select` (mined,
cached or imported list), :mod:`.scorer` (the fitted scorer)."""
from .mining import csp_distances, kept_count, mine_csp_labels
from .params import CSPParams
from .pool import ADJ_TEMPLATES, CSP_EXCLUDED_LEXNAMES, NOUN_TEMPLATES, SUPERCLASS_TEMPLATES, conjugate, csp_pool
from .scorer import CSPScorer
from .select import csp_labels

__all__ = ["csp_distances", "kept_count", "mine_csp_labels", "CSPParams", "ADJ_TEMPLATES",
           "CSP_EXCLUDED_LEXNAMES", "NOUN_TEMPLATES", "SUPERCLASS_TEMPLATES", "conjugate", "csp_pool",
           "CSPScorer", "csp_labels"]
