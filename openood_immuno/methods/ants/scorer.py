"""The fitted ANTS scorer: a test stream's mining, MLLM updates of the ENS / VSNL banks, and
adaptive fusion.

One call of :meth:`ANTSScorer.score` processes one batch in stream order (the order of the
ANTS code's ``postprocess``):

1. S_base = NegLabel score, pred = arg-max over ID classes;
2. mining: images with S_base < threshold are cached (:class:`NegativeImageMiner`; the
   threshold by ``threshold_rule``; ``mining: fixed`` keeps ``init_threshold``, ``mining: off``
   caches every image);
3. ENS update when the cache holds more than ``mine_min_cache`` images (at most
   ``ens_max_updates`` per stream): threshold recomputed, the MLLM describes every cached
   image (``ens_selection: paper``: Eq. 7, M sentences, :mod:`.sentences`), sentences encoded
   raw and added to the ENS bank;
4. VSNL update at batch ``vsnl_start_batch`` and every ``vsnl_interval`` batches after: the
   most frequent predicted classes (over all predictions: code; over mined images: paper) get
   ``vsnl_names_per_class`` similar names each (asked once per class; the bank in the code's
   cache order, :mod:`.vsnl`);
   a space that the mode never reads is not built (``far_only``: no VSNL calls; ``near_only``:
   the threshold still adapts, but mined images are not described), which changes no score;
5. S_ens, S_vsnl over [ID ; bank] (S_base while a bank is empty; grouped as the code, or one
   softmax with ``score_grouping: paper_ungrouped``), and the output by ``mode``:
   ``far_only`` = S_ens, ``near_only`` = S_vsnl, ``ada`` = lambda S_ens + (1 - lambda) S_vsnl.

Without an MLLM (``backend=None``, or one that failed to load: :func:`load_mllm`) the banks stay
empty and every mode returns S_base exactly.

An MLLM answer with no usable text (``null``, empty, nothing that parses into a description or a
name) is a failed request (counted in the backend's ``CostLog``); :class:`~.fill.BankFill` counts
what each bank was asked and got over the run, and :meth:`ANTSScorer.bank_problems` says when the
banks make the run degraded (``min_bank_fill``).
"""
from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from typing import Any, Optional, Sequence

import torch
from PIL import Image

from openood_immuno.core.redact import redact
from openood_immuno.data.lists import load_rgb
from openood_immuno.llm.parsing import parse_description, parse_list
from openood_immuno.llm.vision import MLLMBackend, build_vision_backend
from openood_immuno.scores.ants import ANTSScores, fused_ants_scores
from .adaptive import RunningMean, adaptive_lambda, fuse
from openood_immuno.methods.neglabel.scorer import NegLabelScorer
from .ens import ENSBank, dedupe
from .fill import BankFill
from .mining import NegativeImageMiner
from .sentences import describe_images, ens_sentences
from .params import ANTSParams
from .vsnl import VSNLBank

log = logging.getLogger(__name__)


def load_mllm(params: ANTSParams, who: str = "ANTS") -> Optional[MLLMBackend]:
    """The loaded MLLM of ``params.mllm``; ``None`` for ``mllm: none``, or, unless
    ``mllm_strict``, when it cannot load (an ERROR log and a warning say the scores are then
    NegLabel's: the run is degraded)."""
    p = params
    backend = build_vision_backend(p.mllm, p.mllm_batch_size, p.mllm_device, p.mllm_dtype,
                                   p.mllm_api_key_env, p.mllm_timeout_s, p.mllm_give_up_after,
                                   p.mllm_failure_budget_s, p.mllm_image_size,
                                   {k: v for k, v in (("min_pixels", p.mllm_min_pixels),
                                                      ("max_pixels", p.mllm_max_pixels)) if v})
    if backend is None:
        log.info("%s: mllm=none, scoring exactly as NegLabel", who)
        return None
    try:
        backend.load()
    except Exception as exc:
        if p.mllm_strict:
            raise
        msg = (f"{who}: MLLM {backend.spec} unavailable ({exc}). DEGRADED: every score below is "
               "the NegLabel score, not ANTS. Set mllm_strict: true to fail instead, or mllm: none "
               "to silence this.")
        msg = redact(msg)
        log.error(msg)
        warnings.warn(msg, stacklevel=2)
        return None
    return backend


def _fmt(value: Optional[float]) -> str:
    return "none" if value is None else f"{value:.4f}"


class ANTSScorer:
    """Test-time state and scoring of ANTS for one CLIP net.

    Args:
        params: the parameters (typed and validated once, at load).
        backend: a loaded MLLM, or ``None`` (no adaptation: S_base).

    :meth:`fit` takes the net and its fitted NegLabel scorer (S_base).
    """

    def __init__(self, params: ANTSParams, backend: Optional[MLLMBackend]):
        self.params, self.backend = params, backend
        self.net = self.base = None
        self.miner = NegativeImageMiner(params)
        self.ens = ENSBank(params)
        self.vsnl = VSNLBank()
        self.mean_ens, self.mean_vsnl = RunningMean(), RunningMean()
        self.fill, self.batch_index = BankFill(), 0
        self.reset()

    def fit(self, net, base: NegLabelScorer) -> "ANTSScorer":
        """Score with ``net`` (text encoder, class names) over the fitted NegLabel ``base``."""
        self.net, self.base = net, base
        self.reset()
        return self

    # ---- state -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream: banks, mining cache, threshold, counts and running means (the
        run's :class:`~.fill.BankFill` keeps how the stream ended)."""
        if self.batch_index:
            self.fill.end_stream(len(self.ens), len(self.vsnl))
        self.batch_index = 0
        self.miner.reset()
        self.ens.clear()
        self.vsnl.clear()
        self.predictions: Counter = Counter()
        self.mean_ens.reset()
        self.mean_vsnl.reset()
        self.last_lambda: Optional[float] = None
        self._warned_no_sources = False
        self.ens_rng = torch.Generator().manual_seed(self.params.ens_seed)   # Eq. 7's selection

    def status(self) -> dict:
        return {"batch": self.batch_index, "threshold": self.miner.threshold,
                "threshold_upper": self.miner.upper, "ens_updates": self.miner.updates,
                "ens_bank": len(self.ens), "vsnl_bank": len(self.vsnl), "lambda": self.last_lambda,
                "mllm": None if self.backend is None else self.backend.spec,
                "mllm_cost": None if self.backend is None else self.backend.cost.as_dict(),
                "bank_fill": self._fill_now().as_dict()}

    def _fill_now(self) -> BankFill:
        """The run's bank counts, the stream in progress (if any) counted as ended now."""
        return self.fill.closed(len(self.ens), len(self.vsnl)) if self.batch_index else self.fill

    def bank_problems(self) -> list[str]:
        """Why the MLLM's banks make this run degraded (:meth:`~.fill.BankFill.problems`);
        ``[]`` without an MLLM (that is reported as such) or when the banks are filled."""
        if self.backend is None:
            return []
        p = self.params
        return self._fill_now().problems(p.mode != "near_only", p.mode != "far_only", p.min_bank_fill)

    # ---- one batch -----------------------------------------------------------------------
    @torch.no_grad()
    def score(self, features: torch.Tensor, sources: Optional[Sequence[Any]] = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, conf)`` for one batch; ``sources`` = image paths (or PIL images) of the rows.

        Every grouped score of the batch comes from one :func:`fused_ants_scores` call (one ID
        log-sum-exp, one matmul over ``[negative labels ; ENS ; VSNL]``); only a batch that
        changed a bank is scored a second time, with the new banks (S_base and pred do not
        depend on the banks, so mining sees the same values).
        """
        if self.base is None:
            raise RuntimeError("ANTS scorer used before fit(): call fit(net, id_features) first")
        p = self.params
        self.batch_index += 1
        feats = features.float().to(self.base.id_text.device)
        scores = self._fused(feats)
        pred, s_base = scores.pred, scores.base
        self.predictions.update(pred.tolist())
        if sources is None and self.backend is not None and not self._warned_no_sources:
            log.warning("ANTS got no image paths: mined images cannot be described, the ENS bank "
                        "stays empty (VSNL still adapts)")
            self._warned_no_sources = True
        mined = self.miner.observe(s_base, pred, sources if self.backend is not None else None)
        if self.backend is not None:
            ens_before, vsnl_before = self.ens.features, self.vsnl.features
            if self.miner.ready():
                self._update_ens()
            start, every = p.vsnl_start_batch, p.vsnl_interval
            if (p.mode != "far_only" and self.batch_index >= start
                    and (self.batch_index - start) % every == 0):
                self._update_vsnl()
            if self.ens.features is not ens_before or self.vsnl.features is not vsnl_before:
                scores = self._fused(feats)

        if p.mode == "far_only":
            return pred, scores.ens
        if p.mode == "near_only":
            return pred, scores.vsnl
        self._update_means(scores, mined.to(s_base.device))
        lam = self.last_lambda = (0.5 if self.mean_ens.mean is None
                                  else adaptive_lambda(self.mean_ens.mean, self.mean_vsnl.mean))
        if len(self.ens) == 0 and len(self.vsnl) == 0:
            return pred, s_base
        return pred, fuse(scores.ens, scores.vsnl, lam)

    def _fused(self, feats: torch.Tensor) -> ANTSScores:
        """The batch's grouped scores over the current banks (balanced ones only if lambda reads them)."""
        p = self.params
        return fused_ants_scores(feats, self.base.id_text, self.base.neg_text, self.ens.features,
                                 self.vsnl.features, p.logit_scale, p.n_groups, p.group_size,
                                 p.group_seed, p.vsnl_balance_repeats,
                                 balanced=p.mode == "ada" and p.lambda_balanced,
                                 ungrouped=p.score_grouping == "paper_ungrouped")

    def _update_means(self, scores: ANTSScores, mined: torch.Tensor) -> None:
        """Add the batch to the running means of lambda (balanced or plain; all or mined)."""
        p = self.params
        s_ens, s_vsnl = ((scores.ens_balanced, scores.vsnl_balanced) if p.lambda_balanced
                         else (scores.ens, scores.vsnl))
        if p.lambda_means == "mined":
            s_ens, s_vsnl = s_ens[mined], s_vsnl[mined]
        self.mean_ens.add(s_ens)
        self.mean_vsnl.add(s_vsnl)

    # ---- bank updates ------------------------------------------------------------------------
    def _load(self, items) -> list[tuple[Image.Image, str]]:
        """``(image, predicted class name)`` of the mined items that can be read."""
        loaded, failed = [], []
        for source, pred in items:
            try:
                img = source.convert("RGB") if isinstance(source, Image.Image) else load_rgb(str(source))
            except (OSError, RuntimeError) as exc:
                failed.append(f"{source!s} ({exc})")
                continue
            loaded.append((img, self.net.class_names[pred]))
        if failed:
            log.warning("ANTS: %d of %d mined images could not be read and are skipped, e.g. %s",
                        len(failed), len(items), failed[0])
        return loaded

    def _update_ens(self) -> None:
        p = self.params
        items = self.miner.take()
        if p.mode == "near_only":   # S_vsnl alone: the threshold adapts, nobody reads ENS
            return
        loaded = self._load(items)
        prompts = [p.ens_prompt.format(class_name=c) for _, c in loaded]
        describe = describe_images(self.backend, [img for img, _ in loaded], prompts, p.ens_max_new_tokens,
                                   accept=lambda i, t: parse_description(t, loaded[i][1]) is not None)

        def parse(answers):   # one prompting round: its usable share counts towards min_bank_fill
            described = [d for d in (parse_description(t, c) for t, (_, c) in zip(answers, loaded)) if d]
            self.fill.ens_asked += len(loaded)
            self.fill.ens_usable += len(described)
            return dedupe(described)

        sentences, rounds = ens_sentences(describe, parse, len(loaded), p.ens_selection,
                                          p.ens_sentences, self.ens_rng)
        if sentences:
            self.ens.add(sentences, self.net.encode_text(sentences, ()).to(self.base.id_text.device))
        else:
            log.warning("ANTS ENS update %d: the MLLM gave no usable description for %d images",
                        self.miner.updates, len(items))
        log.info("ANTS ENS update %d/%d at batch %d: mining %s, threshold %s (%s rule, below %s), "
                 "%d mined images -> %d sentences (%s selection, %d prompting rounds), bank %d",
                 self.miner.updates, self.miner.max_updates, self.batch_index, p.mining,
                 _fmt(self.miner.threshold), p.threshold_rule, _fmt(self.miner.upper), len(items),
                 len(sentences), p.ens_selection, rounds, len(self.ens))

    def _vsnl_classes(self) -> list[int]:
        p = self.params
        counts = self.predictions if p.vsnl_count_over == "all" else self.miner.mined_predictions
        k = p.vsnl_top_k or max(1, math.ceil(p.vsnl_delta * len(self.net.class_names)))
        return [c for c, _ in counts.most_common(k)]

    def _update_vsnl(self) -> None:
        p, names = self.params, self.net.class_names
        active = self._vsnl_classes()
        missing = self.vsnl.missing(active)
        prompts = [p.vsnl_prompt.format(class_name=names[c]) for c in missing]
        answers = (self.backend.generate(
            prompts, None, p.vsnl_max_new_tokens, task="VSNL names",
            accept=lambda i, t: bool(parse_list(t, names[missing[i]], p.vsnl_names_per_class)))
            if prompts else [])
        new = {c: parse_list(t, names[c], p.vsnl_names_per_class)
               for c, t in zip(missing, answers) if t is not None}
        self.fill.vsnl_asked += len(missing) * p.vsnl_names_per_class
        self.fill.vsnl_usable += sum(len(v) for v in new.values())
        labels = self.vsnl.update(active, new)
        self.vsnl.features = (self.net.encode_text(labels, (p.vsnl_template,)).to(self.base.id_text.device)
                              if labels else None)
        log.log(logging.INFO if missing else logging.DEBUG,
                "ANTS VSNL update at batch %d: %d active classes (%d asked), bank %d names",
                self.batch_index, len(active), len(missing), len(labels))
