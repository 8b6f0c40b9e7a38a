"""ANTS over a test stream: mining, MLLM updates of the ENS / VSNL banks, adaptive fusion.

One call of :meth:`ANTSOnline.step` processes one batch in stream order (the order of the
ANTS code's ``postprocess``):

1. S_base = NegLabel score, pred = arg-max over ID classes;
2. mining: images with S_base < threshold are cached (:class:`NegativeImageMiner`);
3. ENS update when the cache holds more than ``mine_min_cache`` images (at most
   ``ens_max_updates`` per stream): threshold recomputed, the MLLM describes every cached
   image, sentences encoded raw and added to the ENS bank;
4. VSNL update at batch ``vsnl_start_batch`` and every ``vsnl_interval`` batches after: the
   most frequent predicted classes (over all predictions: code; over mined images: paper) get
   ``vsnl_names_per_class`` similar names each (asked once per class);
   a space that the mode never reads is not built (``far_only``: no VSNL calls; ``near_only``:
   the threshold still adapts, but mined images are not described), which changes no score;
5. S_ens, S_vsnl over [ID ; bank] (S_base while a bank is empty), and the output by ``mode``:
   ``far_only`` = S_ens, ``near_only`` = S_vsnl, ``ada`` = lambda S_ens + (1 - lambda) S_vsnl.

Without an MLLM (``backend=None``, or one that failed to load) the banks stay empty and every
mode returns S_base exactly.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Mapping, Optional, Sequence

import torch
from PIL import Image

from ..data import load_rgb
from ..llm.parsing import parse_description, parse_list
from ..llm.vision import MLLMBackend
from ..scores.ants import balanced_bank_score, bank_score
from .adaptive import RunningMean, adaptive_lambda, fuse
from .banks import ENSBank, VSNLBank, dedupe
from .mining import NegativeImageMiner

log = logging.getLogger(__name__)

MODES = ("ada", "far_only", "near_only")
COUNT_OVER = ("all", "mined")


def _choice(args: Mapping[str, Any], name: str, choices: Sequence[str]) -> str:
    value = str(args[name])
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid: use one of {list(choices)}")
    return value


def _positive(args: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if not int(args[name]) >= 1:
            raise ValueError(f"{name} must be >= 1, got {args[name]}")


class ANTSOnline:
    """Test-time state and scoring of ANTS for one CLIP net.

    Args:
        args: the postprocessor's parameters (``ANTS_DEFAULTS`` keys).
        net: the :class:`~openood_immuno.clip_net.CLIPNet` (text encoder, class names).
        base: a prepared :class:`~openood_immuno.neglabel.NegLabelScorer` (S_base).
        backend: a loaded MLLM, or ``None`` (no adaptation: S_base).
    """

    def __init__(self, args: Mapping[str, Any], net, base, backend: Optional[MLLMBackend]):
        self.args, self.net, self.base, self.backend = args, net, base, backend
        self.mode = _choice(args, "mode", MODES)
        self.lambda_means = _choice(args, "lambda_means", COUNT_OVER)
        self.vsnl_count_over = _choice(args, "vsnl_count_over", COUNT_OVER)
        _positive(args, "vsnl_start_batch", "vsnl_interval", "group_size",
                  "vsnl_names_per_class", "vsnl_balance_repeats", "ens_max_new_tokens",
                  "vsnl_max_new_tokens")
        if int(args["vsnl_top_k"]) < 0 or not 0.0 < float(args["vsnl_delta"]) <= 1.0:
            raise ValueError("vsnl_top_k must be >= 0 (0 = use vsnl_delta) and vsnl_delta in (0, 1]")
        self.miner = NegativeImageMiner(float(args["init_threshold"]), float(args["eta"]),
                                        int(args["hist_bins"]), int(args["mine_min_cache"]),
                                        int(args["ens_max_updates"]))
        self.ens = ENSBank(int(args["ens_bank_size"]), str(args["ens_bank_policy"]))
        self.vsnl = VSNLBank()
        self.mean_ens, self.mean_vsnl = RunningMean(), RunningMean()
        self.reset()

    # ---- state -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream: banks, mining cache, threshold, counts and running means."""
        self.batch_index = 0
        self.miner.reset()
        self.ens.clear()
        self.vsnl.clear()
        self.predictions: Counter = Counter()
        self.mean_ens.reset()
        self.mean_vsnl.reset()
        self.last_lambda: Optional[float] = None
        self._warned_no_sources = False

    def status(self) -> dict:
        return {"batch": self.batch_index, "threshold": self.miner.threshold,
                "threshold_upper": self.miner.upper, "ens_updates": self.miner.updates,
                "ens_bank": len(self.ens), "vsnl_bank": len(self.vsnl), "lambda": self.last_lambda,
                "mllm": None if self.backend is None else self.backend.spec,
                "mllm_cost": None if self.backend is None else self.backend.cost.as_dict()}

    # ---- one batch -----------------------------------------------------------------------
    @torch.no_grad()
    def step(self, features: torch.Tensor, sources: Optional[Sequence[Any]] = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred, conf)`` for one batch; ``sources`` = image paths (or PIL images) of the rows."""
        a = self.args
        self.batch_index += 1
        pred, s_base = self.base.score(features, a)
        self.predictions.update(pred.tolist())
        if sources is None and self.backend is not None and not self._warned_no_sources:
            log.warning("ANTS got no image paths: mined images cannot be described, the ENS bank "
                        "stays empty (VSNL still adapts)")
            self._warned_no_sources = True
        mined = self.miner.observe(s_base, pred, sources if self.backend is not None else None)
        if self.backend is not None:
            if self.miner.ready():
                self._update_ens()
            start, every = int(a["vsnl_start_batch"]), int(a["vsnl_interval"])
            if (self.mode != "far_only" and self.batch_index >= start
                    and (self.batch_index - start) % every == 0):
                self._update_vsnl()

        scale, gs, seed = float(a["logit_scale"]), int(a["group_size"]), int(a["group_seed"])
        feats = features.float().to(self.base.id_text.device)
        id_text = self.base.id_text
        s_ens = bank_score(feats, id_text, self.ens.features, s_base, scale, gs, seed)
        s_vsnl = bank_score(feats, id_text, self.vsnl.features, s_base, scale, gs, seed)
        if self.mode == "far_only":
            return pred, s_ens
        if self.mode == "near_only":
            return pred, s_vsnl
        self._update_means(feats, s_base, s_ens, s_vsnl, mined.to(s_base.device))
        lam = self.last_lambda = (0.5 if self.mean_ens.mean is None
                                  else adaptive_lambda(self.mean_ens.mean, self.mean_vsnl.mean))
        if len(self.ens) == 0 and len(self.vsnl) == 0:
            return pred, s_base
        return pred, fuse(s_ens, s_vsnl, lam)

    def _update_means(self, feats, s_base, s_ens, s_vsnl, mined) -> None:
        a = self.args
        if a["lambda_balanced"]:
            scale, seed = float(a["logit_scale"]), int(a["group_seed"])
            s_ens = balanced_bank_score(feats, self.base.id_text, self.ens.features, s_base, scale,
                                        1, seed)
            s_vsnl = balanced_bank_score(feats, self.base.id_text, self.vsnl.features, s_base, scale,
                                         int(a["vsnl_balance_repeats"]), seed)
        if self.lambda_means == "mined":
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
        a = self.args
        items = self.miner.take()
        if self.mode == "near_only":   # S_vsnl alone: the threshold adapts, nobody reads ENS
            return
        loaded = self._load(items)
        prompts = [str(a["ens_prompt"]).format(class_name=c) for _, c in loaded]
        answers = self.backend.generate(prompts, [img for img, _ in loaded],
                                        int(a["ens_max_new_tokens"]), task="ENS describe")
        sentences = dedupe(d for d in (parse_description(t, c) for t, (_, c) in zip(answers, loaded)) if d)
        if sentences:
            self.ens.add(sentences, self.net.encode_text(sentences, ()).to(self.base.id_text.device))
        else:
            log.warning("ANTS ENS update %d: the MLLM gave no usable description for %d images",
                        self.miner.updates, len(items))
        log.info("ANTS ENS update %d/%d at batch %d: threshold %.4f (histogram jump below %.2f), "
                 "%d mined images -> %d sentences, bank %d", self.miner.updates,
                 self.miner.max_updates, self.batch_index, self.miner.threshold, self.miner.upper,
                 len(items), len(sentences), len(self.ens))

    def _vsnl_classes(self) -> list[int]:
        a = self.args
        counts = self.predictions if self.vsnl_count_over == "all" else self.miner.mined_predictions
        k = int(a["vsnl_top_k"]) or max(1, math.ceil(float(a["vsnl_delta"]) * len(self.net.class_names)))
        return [c for c, _ in counts.most_common(k)]

    def _update_vsnl(self) -> None:
        a, names = self.args, self.net.class_names
        active = self._vsnl_classes()
        missing = self.vsnl.missing(active)
        prompts = [str(a["vsnl_prompt"]).format(class_name=names[c]) for c in missing]
        answers = (self.backend.generate(prompts, None, int(a["vsnl_max_new_tokens"]), task="VSNL names")
                   if prompts else [])
        new = {c: parse_list(t, names[c], int(a["vsnl_names_per_class"]))
               for c, t in zip(missing, answers) if t is not None}
        labels = self.vsnl.update(active, new)
        self.vsnl.features = (self.net.encode_text(labels, (a["vsnl_template"],)).to(self.base.id_text.device)
                              if labels else None)
        log.log(logging.INFO if missing else logging.DEBUG,
                "ANTS VSNL update at batch %d: %d active classes (%d asked), bank %d names",
                self.batch_index, len(active), len(missing), len(labels))
