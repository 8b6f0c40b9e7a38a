"""NegRefine as an OpenOOD postprocessor (name ``negrefine``):
:class:`openood_immuno.methods.negrefine.NegRefineScorer`.

Score: :func:`openood_immuno.scores.negrefine.negrefine_score`. Without the LLM filter (``llm:
none`` and no ``filtered_labels_file``, an LLM that cannot load, any failed LLM request)
``status()`` says ``degraded`` with the reason, as EOE's does without its LLM.
"""
from __future__ import annotations

from openood_immuno.methods.negrefine import NegRefineParams, NegRefineScorer
from openood_immuno.postprocessors.base import ScorerPostprocessor


class NegRefinePostprocessor(ScorerPostprocessor):
    """S = NegLabel's grouped score over LLM-filtered CSP negatives + w * multi-matching score
    (Ansari et al., 2025)."""

    method = "negrefine"
    params_class = NegRefineParams
    scorer_type = NegRefineScorer

    def status(self) -> dict:
        """Negatives used (initial, kept, removed by reason), their source, LLM cost, and whether
        NegRefine degraded (no LLM filter: the unfiltered negatives score; or some LLM requests
        failed: their negatives were kept unasked)."""
        s = self.scorer
        out = {"negatives": len(s.labels), "initial_negatives": s.initial or None,
               "removed": s.removed or None, "negatives_source": s.source or None,
               "degraded": bool(s.problem), "degraded_reason": s.problem}
        if s.llm_cost:
            out["llm_cost"] = s.llm_cost
        return out

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)
