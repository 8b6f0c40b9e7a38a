"""EOE as an OpenOOD postprocessor (name ``eoe``): :class:`openood_immuno.methods.eoe.EOEScorer`.

Score: :func:`openood_immuno.scores.eoe.eoe_score`. Without envisioned names (``llm: none`` and
no ``outlier_names_file``, an LLM that cannot load, any failed LLM request) ``status()`` says
``degraded`` with the reason, as ANTS's does without its MLLM.
"""
from __future__ import annotations

from openood_immuno.methods.eoe import EOEParams, EOEScorer
from openood_immuno.postprocessors.base import ScorerPostprocessor


class EOEPostprocessor(ScorerPostprocessor):
    """S = max softmax over ID - beta * max softmax over envisioned outliers (Cao et al., 2024)."""

    method = "eoe"
    params_class = EOEParams
    scorer_type = EOEScorer

    def status(self) -> dict:
        """Outlier names used, their source, LLM cost, and whether EOE degraded (no names: MCM
        scores; or some LLM requests failed: fewer names than the authors' run would have)."""
        s = self.scorer
        out = {"outlier_names": len(s.names), "outlier_source": s.source or None,
               "degraded": bool(s.problem), "degraded_reason": s.problem}
        if s.llm_cost:
            out["llm_cost"] = s.llm_cost
        return out

    def score_features(self, features, image_paths=None):
        return self.scorer.score(features)
