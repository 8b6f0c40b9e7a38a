"""ANTS as OpenOOD postprocessors: ``ants`` (adaptive), ``ants_ens`` (far_only), ``ants_vsnl``
(near_only). One class, ``method: ants``; each name has its own yml with its ``mode``.

The algorithm is :class:`openood_immuno.ants.online.ANTSOnline`; this adapter builds the MLLM
backend at ``fit`` and defines what one "stream" is:

* ``reset_each_list: true`` (default): every scored list (one ``Evaluator.inference`` call, one
  runner ``score_feature_set`` call) is a stream from empty memory;
* ``reset_each_list: false``: memory carries over from list to list in call order; only
  ``fit``/``reset()`` clear it.

MLLM loading failures: with ``mllm_strict: false`` (default) ANTS logs an ERROR and warns,
then scores exactly as NegLabel (``status()['degraded']`` is True); ``mllm_strict: true``
raises at fit instead. Any failed MLLM request also makes ``status()['degraded']`` True, with
the counts in ``degraded_reason`` and ``mllm_cost``.
"""
from __future__ import annotations

import logging
import warnings

import torch
import torchvision.transforms as T
from PIL import Image

from openood_immuno.ants.online import ANTSOnline
from openood_immuno.llm.vision import build_vision_backend
from openood_immuno.neglabel.scorer import NEGLABEL_DEFAULTS, NegLabelScorer
from openood_immuno.postprocessor_base import ImmunoPostprocessor

log = logging.getLogger(__name__)

ANTS_DEFAULTS = {
    **NEGLABEL_DEFAULTS,
    "mode": "ada",
    "mllm": "hf:Qwen/Qwen2-VL-2B-Instruct",
    "mllm_strict": False,
    "mllm_batch_size": 16,
    "mllm_device": "auto",
    "mllm_dtype": "auto",
    "mllm_api_key_env": "OPENAI_API_KEY",
    "mllm_timeout_s": 60.0,
    "ens_prompt": ("Describe this image in fewer than eight words. "
                   "Do not include the class name {class_name}."),
    "ens_max_new_tokens": 30,
    "vsnl_prompt": ("Give five different class names that share visual features with "
                    "{class_name}, excluding {class_name}. Put each numbered class on a "
                    "separate line."),
    "vsnl_max_new_tokens": 100,
    "vsnl_names_per_class": 5,
    "vsnl_template": "the nice {}",
    "init_threshold": 0.8,
    "eta": 0.5,
    "hist_bins": 10,
    "mine_min_cache": 200,
    "ens_max_updates": 20,
    "ens_bank_size": 10_000,
    "ens_bank_policy": "code",
    "vsnl_start_batch": 10,
    "vsnl_interval": 40,
    "vsnl_count_over": "all",
    "vsnl_top_k": 40,
    "vsnl_delta": 0.08,
    "group_size": 100,
    "lambda_means": "all",
    "lambda_balanced": True,
    "vsnl_balance_repeats": 10,
    "reset_each_list": True,
}
_BACKEND_PARAMS = ("mllm", "mllm_strict", "mllm_batch_size", "mllm_device", "mllm_dtype",
                   "mllm_api_key_env", "mllm_timeout_s")


def images_from_tensor(data: torch.Tensor, preprocess) -> list[Image.Image] | None:
    """Undo the final ``Normalize`` of ``preprocess`` on a batch ``[B, 3, H, W]`` -> PIL images.

    ``None`` when ``preprocess`` does not end in ``Normalize`` (nothing to invert).
    """
    norm = preprocess.transforms[-1] if isinstance(preprocess, T.Compose) else None
    if not isinstance(norm, T.Normalize):
        return None
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    pixels = (data.detach().float().cpu() * std + mean).clamp(0, 1)
    return [T.functional.to_pil_image(x) for x in pixels]


class ANTSPostprocessor(ImmunoPostprocessor):
    """ANTS (Zhu et al.): NegLabel + MLLM-shaped ENS / VSNL negative banks, adaptive fusion."""

    method = "ants"
    defaults = ANTS_DEFAULTS

    def fit(self, net, id_features):
        super().fit(net, id_features)
        self.base = NegLabelScorer()
        self.base.prepare(net, self.args)
        self._backend_args = None
        self._build_online()
        return self

    def _build_online(self) -> None:
        backend_args = {k: self.args[k] for k in _BACKEND_PARAMS}
        if backend_args != self._backend_args:
            self.backend = self._load_backend()
            self.degraded = self.backend is None and str(self.args["mllm"]).lower() != "none"
            self._backend_args = backend_args
        self.online = ANTSOnline(self.args, self.net, self.base, self.backend)

    def _load_backend(self):
        a = self.args
        backend = build_vision_backend(str(a["mllm"]), int(a["mllm_batch_size"]),
                                       str(a["mllm_device"]), str(a["mllm_dtype"]),
                                       str(a["mllm_api_key_env"]), float(a["mllm_timeout_s"]))
        if backend is None:
            log.info("ANTS %s: mllm=none, scoring exactly as NegLabel", self.name)
            return None
        try:
            backend.load()
        except Exception as exc:
            if a["mllm_strict"]:
                raise
            msg = (f"ANTS {self.name}: MLLM {backend.spec} unavailable ({exc}). DEGRADED: every "
                   "score below is the NegLabel score, not ANTS. Set mllm_strict: true to fail "
                   "instead, or mllm: none to silence this.")
            log.error(msg)
            warnings.warn(msg, stacklevel=2)
            return None
        return backend

    def on_hyperparam_change(self) -> None:
        if self.net is not None:
            self.base.prepare(self.net, self.args)
            self._build_online()

    def _online(self) -> ANTSOnline:
        if self.net is None:
            raise RuntimeError(f"{self.name}: call fit(net, id_features) (OpenOOD: setup) first")
        return self.online

    def reset(self) -> None:
        if self.net is not None:
            self.online.reset()

    def status(self) -> dict:
        """Online state (threshold, bank sizes, lambda), MLLM cost, and whether ANTS degraded:
        the MLLM failed to load, or any of its requests failed (``degraded_reason`` says which)."""
        failed = None if self.backend is None else self.backend.cost.failure_note()
        reason = ("MLLM unavailable: NegLabel scores" if self.degraded
                  else f"MLLM: {failed}" if failed else None)
        return {**self._online().status(), "degraded": bool(reason), "degraded_reason": reason}

    def score_features(self, features, image_paths=None):
        return self._online().step(features, image_paths)

    def score_feature_set(self, fs, batch_size=256, progress=False):
        if self.args["reset_each_list"]:
            self.reset()
        out = super().score_feature_set(fs, batch_size, progress)
        log.info("ANTS %s on %s: %s", self.name, fs.name, self.status())
        return out

    @torch.no_grad()
    def postprocess(self, net, data):
        """OpenOOD's per-batch path: images recovered from the normalised tensor for the MLLM."""
        online = self._online()
        features = net.encode_image(data)
        self.check_features(features, "image features of the batch")
        return online.step(features, images_from_tensor(data, getattr(net, "preprocess", None)))
