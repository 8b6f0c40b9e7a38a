"""The fitted EOE scorer of a CLIP net: envisioned outlier names, text banks, and
:func:`openood_immuno.scores.eoe.eoe_score`.

Where the names come from, in order: ``outlier_names_file``; the cache of an earlier complete
LLM run; the LLM of ``llm`` (:mod:`.envision`). Without names (``llm: none`` and no file, an LLM
that cannot load, or one that answered nothing usable) the score has no outlier term and is
MCM's: :attr:`EOEScorer.problem` says so and the postprocessor reports the run degraded, as
ANTS does without its MLLM.
"""
from __future__ import annotations

import logging
import warnings
from typing import Optional

import torch

from openood_immuno.llm.errors import BackendUnavailable
from openood_immuno.scores.eoe import eoe_score
from .envision import cache_key, cached_names, envision, store_names
from .names import clean_names, read_names
from .params import EOEParams
from .prompts import default_count

log = logging.getLogger(__name__)


class EOEScorer:
    """``fit(net)`` gathers the names and builds ``id_text`` [C, d] and ``outlier_text`` [N, d]."""

    def __init__(self, params: EOEParams):
        self.params = params
        self.names: list[str] = []
        self.source = ""
        self.problem: Optional[str] = None
        self.llm_cost: dict = {}
        self.id_text = self.outlier_text = None
        self._fitted_on = None

    def _raw_names(self, net) -> list[str]:
        p = self.params
        if p.outlier_names_file:
            self.source = p.outlier_names_file
            return read_names(p.outlier_names_file)
        if p.llm.strip().lower() == "none":
            self.problem = "no LLM (llm: none) and no outlier_names_file: MCM scores"
            return []
        count = p.L or default_count(p.task)
        settings = p.llm_settings()
        key = cache_key(p.llm, settings, p.task, net.class_names, p.class_type, count)
        names = cached_names(key)
        if names is not None:
            self.source = f"{p.llm} (cached)"
            return names
        try:
            backend = p.chat_backend("eoe.llm")
        except BackendUnavailable as exc:
            self.problem = f"LLM {p.llm} unavailable ({exc}): MCM scores"
            return []
        run = envision(backend, p.task, net.class_names, p.class_type, count, p.llm_seed)
        self.llm_cost = backend.cost.as_dict()
        self.source = p.llm
        if run.problem:
            self.problem = run.problem
        elif run.names:
            store_names(key, run.names, {"llm": p.llm, "task": p.task, "L": count})
        return run.names

    def fit(self, net, reuse: Optional["EOEScorer"] = None) -> "EOEScorer":
        """Gather names and build the banks, or take those of ``reuse`` (same net, same
        :attr:`EOEParams.BANK`)."""
        p = self.params
        if (reuse is not None and reuse._fitted_on == net.identity
                and not p.changed(reuse.params, EOEParams.BANK)):
            for attr in ("names", "source", "problem", "llm_cost", "id_text", "outlier_text"):
                setattr(self, attr, getattr(reuse, attr))
        else:
            self.names = clean_names(self._raw_names(net), net.class_names, p.task)
            if not self.names and self.problem is None:
                self.problem = f"no usable outlier name from {self.source or p.llm}: MCM scores"
            if self.problem and not self.names:
                msg = f"EOE: {self.problem}. DEGRADED: every score is MCM's, not EOE's."
                log.error(msg)
                warnings.warn(msg, stacklevel=2)
            self.id_text = net.encode_text(net.class_names, p.templates)
            self.outlier_text = (net.encode_text(self.names, p.templates) if self.names
                                 else self.id_text.new_zeros((0, self.id_text.shape[1])))
            log.info("EOE: %d outlier names from %s", len(self.names), self.source or "nowhere")
        self._fitted_on = net.identity
        return self

    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, S_EOE)`` for unit image features ``[B, d]``."""
        if self.id_text is None:
            raise RuntimeError("EOE scorer used before fit(): call fit(net) first")
        return eoe_score(features, self.id_text, self.outlier_text, self.params.T, self.params.beta)
