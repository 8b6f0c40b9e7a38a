"""The fitted NegRefine scorer of a CLIP net: refined negatives, text banks, and
:func:`openood_immuno.scores.negrefine.negrefine_score`.

Where the negatives come from, in order: ``filtered_labels_file`` (no mining, no LLM); else the
initial negatives (CSP's mining with NegRefine's values, :func:`openood_immuno.methods.csp.csp_labels`,
or ``neg_labels_file``), cleaned, then filtered by the cache of an earlier complete LLM run or by
the LLM of ``llm`` (:mod:`.filter`). Without an LLM (``llm: none`` and no filtered file, or an
LLM that cannot load) the score runs on the cleaned initial negatives: :attr:`NegRefineScorer.problem`
says so and the postprocessor reports the run degraded, as EOE does without its LLM.
"""
from __future__ import annotations

import logging
import warnings
from itertools import islice
from typing import Optional

import torch

from openood_immuno.llm.errors import BackendUnavailable
from openood_immuno.methods.csp import csp_labels
from openood_immuno.methods.neglabel.labelfile import import_labels
from openood_immuno.methods.neglabel.mining import NegativeLabels
from openood_immuno.scores.negrefine import negrefine_score, top_matches as top_image_matches
from .filter import REASONS, cache_key, cached_refined, clean_words, refine, store_refined, top_matches
from .params import NegRefineParams

log = logging.getLogger(__name__)

PAIR_TEXT = "{} and {}"    # the multi-matching text of ID class p and negative n (authors': p + " and " + n)
PAIR_MEMO = 50_000         # pair features kept between batches (about 100 MB at d = 512)


class NegRefineScorer:
    """``fit(net)`` builds ``id_text`` [C, d] and ``neg_text`` [M, d] (nouns, then phrases);
    ``score`` encodes each image's multi-matching texts with the same net (``cache=False``: not
    kept by the net), memoised here per text, the :data:`PAIR_MEMO` latest."""

    def __init__(self, params: NegRefineParams):
        self.params = params
        self.labels: Optional[NegativeLabels] = None
        self.initial = 0
        self.removed: dict = {}
        self.source = ""
        self.problem: Optional[str] = None
        self.llm_cost: dict = {}
        self.id_text = self.neg_text = None
        self.net = None
        self._pair_memo: dict[str, torch.Tensor] = {}

    def _matches(self, net, words: list[str]) -> dict[str, list[str]]:
        if not words:
            return {}
        ids = net.encode_text(net.class_names, ())
        rows = top_matches(net.encode_text(words, ()), ids, self.params.top_matches)
        return {w: [net.class_names[j] for j in row] for w, row in zip(words, rows)}

    def _refined(self, net) -> NegativeLabels:
        p = self.params
        if p.filtered_labels_file:
            self.source = p.filtered_labels_file
            return import_labels(p.filtered_labels_file)
        initial = csp_labels(net, p)   # NegRefineParams is a CSPParams
        self.initial = len(initial)
        nouns, adjectives = clean_words(initial.nouns), clean_words(initial.adjectives)
        unfiltered = NegativeLabels(nouns, adjectives)
        if p.llm.strip().lower() == "none":
            self.problem = "no LLM (llm: none) and no filtered_labels_file: the initial negatives score"
            return unfiltered
        matches = self._matches(net, nouns + adjectives)
        settings = p.llm_settings()
        key = cache_key(p.llm, settings, nouns, adjectives, matches)
        cached = cached_refined(key)
        if cached is not None:
            self.source = f"{p.llm} (cached)"
            self.removed = {r: int(cached.meta.get(f"removed_{r}", 0)) for r in REASONS}
            return cached
        try:
            backend = p.chat_backend("negrefine.llm")
        except BackendUnavailable as exc:
            self.problem = f"LLM {p.llm} unavailable ({exc}): the initial negatives score"
            return unfiltered
        run = refine(backend, nouns, adjectives, matches, p.llm_seed)
        self.llm_cost = backend.cost.as_dict()
        self.source, self.removed, self.problem = p.llm, dict(run.removed), run.problem
        if not run.problem:
            store_refined(key, run, {"method": "negrefine", "llm": p.llm, "initial": len(initial)})
        return run.labels

    def fit(self, net, reuse: Optional["NegRefineScorer"] = None) -> "NegRefineScorer":
        """Refine the negatives and build the banks, or take those of ``reuse`` (same net, same
        :attr:`NegRefineParams.BANK`)."""
        p = self.params
        if (reuse is not None and reuse.net is not None and reuse.net.identity == net.identity
                and not p.changed(reuse.params, NegRefineParams.BANK)):
            for attr in ("labels", "initial", "removed", "source", "problem", "llm_cost", "id_text",
                         "neg_text", "_pair_memo"):
                setattr(self, attr, getattr(reuse, attr))
        else:
            self.labels = self._refined(net)
            if not len(self.labels):
                raise ValueError(f"NegRefine: no negative label left from {self.source or 'mining'}: "
                                 "raise neg_ratio or corpus_limit, or give another filtered_labels_file")
            if self.problem:
                msg = f"NegRefine: {self.problem}. DEGRADED: not the LLM-filtered negatives of NegRefine."
                log.error(msg)
                warnings.warn(msg, stacklevel=2)
            self.id_text = net.encode_text(net.class_names, p.id_templates)
            parts = [net.encode_text(words, templates) for words, templates in
                     ((self.labels.nouns, p.noun_templates), (self.labels.adjectives, p.adj_templates))
                     if words]
            self.neg_text = torch.cat(parts)
            log.info("NegRefine: %d negatives (%d nouns, %d phrases) from %s", len(self.labels),
                     len(self.labels.nouns), len(self.labels.adjectives), self.source or "mining")
        self.net = net
        return self

    @property
    def neg_names(self) -> list[str]:
        return self.labels.nouns + self.labels.adjectives

    def _pair_text(self, pos_idx: torch.Tensor, neg_idx: torch.Tensor) -> torch.Tensor:
        """Unit features ``[B, k_pos, k_neg, d]`` of ``'<class> and <negative>'`` (noun prompts)."""
        classes, negs = self.net.class_names, self.neg_names
        texts = [[[PAIR_TEXT.format(classes[i], negs[j]) for j in row_n] for i in row_p]
                 for row_p, row_n in zip(pos_idx.tolist(), neg_idx.tolist())]
        missing = list(dict.fromkeys(t for img in texts for row in img for t in row
                                     if t not in self._pair_memo))
        fresh = {}
        if missing:
            feats = self.net.encode_text(missing, self.params.noun_templates, cache=False).float().cpu()
            fresh = dict(zip(missing, feats))
        flat = torch.stack([fresh[t] if t in fresh else self._pair_memo[t]
                            for img in texts for row in img for t in row])
        self._pair_memo.update(fresh)
        for old in list(islice(self._pair_memo, max(0, len(self._pair_memo) - PAIR_MEMO))):
            del self._pair_memo[old]      # the oldest first: the memo stays bounded
        b, kp, kn = pos_idx.shape[0], pos_idx.shape[1], neg_idx.shape[1]
        return flat.reshape(b, kp, kn, -1).to(self.id_text.device)

    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, S_NegRefine)`` for unit image features ``[B, d]``."""
        if self.id_text is None:
            raise RuntimeError("NegRefine scorer used before fit(): call fit(net) first")
        p = self.params
        feats = features.float().to(self.id_text.device)
        pos_idx, neg_idx, _ = top_image_matches(feats, self.id_text, self.neg_text, p.logit_scale,
                                                p.k_pos, p.k_neg)
        return negrefine_score(feats, self.id_text, self.neg_text, self._pair_text(pos_idx, neg_idx),
                               p.logit_scale, p.n_groups, p.group_seed, p.k_pos, p.k_neg, p.mm_weight)
