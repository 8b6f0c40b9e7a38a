"""An OpenOOD-compatible CLIP classifier built with open_clip.

``net(x)`` returns zero-shot ID logits ``logit_scale * cos(v, t_c)`` and
``net(x, return_feature=True)`` returns ``(logits, v)`` with ``v`` the L2-normalised
image feature, which is the ``net`` contract of OpenOOD v1.5's ``Evaluator``.

**Adapter hook.** ``net.set_adapter(g, prototypes, owner)`` makes the classifier a trained
one: ``net(x)`` then returns ``logit_scale * cos(g(v), mu_c)`` and ``net(x, return_feature=True)``
returns ``(logits, g(v))`` (``g(v)`` L2-normalised), so OpenOOD's ACC column (``argmax net(x)``)
is the adapted model's accuracy; ``net.clear_adapter()`` (or leaving ``with net.adapted(...)``)
restores zero-shot CLIP. Only ``forward`` is adapted: ``encode_image`` always returns the raw
CLIP feature ``v``, so the feature cache (keyed on ``identity``, which the hook does not change)
only ever holds raw features, and postprocessors, which score raw features and apply their own
adapter, never apply one twice.

Class text features are template ensembles (Radford et al., 2021, Sec. 3.1.4):
``t_c = normalise(mean_k normalise(E_text(template_k(c))))``.

**OpenOOD's classifier contract** (what OpenOOD's own postprocessors call; docs/openood.md):

* the *feature* is the L2-normalised image embedding ``v`` (``g(v)`` with the adapter hook), the
  input of the text classifier and what the feature cache holds, so the builtin runner and
  OpenOOD's postprocessors score the same vectors;
* the *linear head* is the text classifier with the logit scale folded in: weight
  ``W = logit_scale * [t_1; ...; t_C]`` (``[C, d]``), bias ``b = 0``; ``forward`` computes
  ``logits = F.linear(feature, W, b)``, so ``logits == feature @ W.T + b`` holds bit for bit for
  the feature ``net(x, return_feature=True)`` returns (``get_fc()`` / ``get_fc_layer()`` / ``fc``);
* ``forward_threshold(x, c)`` is ReAct (Sun et al., NeurIPS 2021): ``W min(v, c) + b``, the clip
  acting on the input of the last linear layer, here the image embedding before the text
  classifier, as OpenOOD's own ViT-B/16 and Swin-T nets clip the feature before their head;
* ``forward`` runs with gradients when the caller enables them (ODIN's input perturbation);
  ``encode_image`` (feature extraction) never does;
* ``return_feature_list=True`` raises: a CLIP classifier has one feature layer, not the per-stage
  feature maps of a ResNet that gram, mds_ensemble, gmm, rd4ad and grood read.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T
from tqdm.auto import tqdm

from openood_immuno.core.cache import atomic_torch_save, cache_dir, content_key, torch_load_cached
from openood_immuno.data.classnames import resolve_class_names
from .loading import (_create_open_clip, _model_identity, _register_local_model_configs, _weights_identity,
                      check_pretrained, is_random_init)
from .local_tokens import check_patch_tokens, global_and_local

log = logging.getLogger(__name__)

MCM_TEMPLATES = ("a photo of a {}.",)
_TEXT_BATCH = 256
_PROGRESS_MIN_PROMPTS = 8 * _TEXT_BATCH  # fewer prompts (1000 ID classes) take seconds: no bar


@dataclass(frozen=True)
class AdapterHook:
    """What ``forward`` uses instead of zero-shot CLIP: ``logits = scale * cos(g(v), mu_c)``.

    ``adapter`` maps unit features ``[B, d]`` to unit features (``None`` = identity, i.e. only
    the prototypes change); ``prototypes`` ``[C, d]`` are unit class vectors in label order;
    ``owner`` names who installed it (a postprocessor's name), for logs and checks.
    """

    adapter: Optional[nn.Module]
    prototypes: torch.Tensor
    owner: str = ""


class CLIPNet(nn.Module):
    """CLIP zero-shot classifier with OpenOOD's ``net`` interface.

    Attributes:
        clip: the open_clip model (frozen).
        tokenizer: open_clip tokenizer for the model.
        preprocess: a torchvision ``Compose`` ending in ``Normalize`` (OpenOOD checks this).
        class_names: ID class names, in label order.
        templates: prompt templates of the ID classifier.
        identity: string naming (model, weights); cache keys derive from it (the adapter hook
            does not change it: it changes ``forward`` only, never ``encode_image``).
        progress: show a progress bar when encoding many texts (NegLabel's corpus, antibodies).
        adapter_hook: the installed :class:`AdapterHook`, or ``None`` (zero-shot CLIP).
        random_weights: ``True`` when built with ``pretrained='none'`` (random initialisation):
            every result of this net is marked ``RANDOM WEIGHTS`` (:mod:`openood_immuno.core.status`).
    """

    random_weights = False

    def __init__(self, clip: nn.Module, tokenizer, preprocess: T.Compose, class_names: Sequence[str],
                 templates: Sequence[str], identity: str, text_cache: bool = True,
                 progress: bool = True):
        super().__init__()
        if not isinstance(preprocess, T.Compose) or not isinstance(preprocess.transforms[-1], T.Normalize):
            raise TypeError("CLIPNet.preprocess must be a torchvision Compose ending in Normalize")
        self.clip = clip.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.class_names = list(class_names)
        self.templates = tuple(templates)
        self.identity = identity
        self.text_cache = text_cache
        self.progress = progress
        self._text_memo: dict[str, torch.Tensor] = {}
        self.adapter_hook: Optional[AdapterHook] = None
        self.register_buffer("class_text_features", self.encode_text(self.class_names), persistent=False)

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    @property
    def embed_dim(self) -> int:
        return int(self.class_text_features.shape[1])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().detach()

    @torch.no_grad()
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features, float32, shape [B, d]."""
        return self._embed(x)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``encode_image`` in the caller's grad mode (ODIN differentiates through it)."""
        return F.normalize(self.clip.encode_image(x.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def encode_image_local(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(global [B, d], local [B, P, d])``, L2-normalised, float32, in one tower pass: the
        global feature equals :meth:`encode_image`'s; the local ones are GL-MCM's per-patch
        features (:mod:`openood_immuno.models.local_tokens`). A tower without patch tokens (a
        ResNet CLIP) raises :class:`~openood_immuno.models.local_tokens.NoPatchTokens`."""
        check_patch_tokens(self.clip.visual, self.identity.split("|")[0])
        g, local = global_and_local(self.clip.visual, x.to(self.device))
        return F.normalize(g.float(), dim=-1), F.normalize(local.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], templates: Sequence[str] | None = None,
                    cache: bool = True) -> torch.Tensor:
        """Template-ensembled, L2-normalised text features [N, d] (cached on disk).

        With ``templates=()`` the raw texts are encoded as they are (no template). ``cache=False``
        encodes now and keeps nothing, on disk or in memory (texts met once, such as NegRefine's
        per-image pair texts, which the caller memoises itself).
        """
        texts = list(texts)
        templates = self.templates if templates is None else tuple(templates)
        if not cache:
            return self._encode_text_uncached(texts, templates).to(self.device)
        key = content_key("text-v1", self.identity, templates, texts)
        if key in self._text_memo:
            return self._text_memo[key].to(self.device)
        path = cache_dir("text") / f"{key}.pt"
        feats = torch_load_cached(path) if self.text_cache else None
        # the class text features fix the dimension (until they exist: the first call, which makes them)
        dim = self.embed_dim if hasattr(self, "class_text_features") else None
        if feats is not None and (not isinstance(feats, torch.Tensor) or feats.ndim != 2
                                  or feats.shape[0] != len(texts) or feats.shape[1] != (dim or feats.shape[1])
                                  or not bool(torch.isfinite(feats).all())):
            # the key names the texts, templates and model: a wrong shape or non-finite values
            # can only be a damaged or foreign file
            log.warning("text features: cache entry %s not used: it holds %s for %d texts of dimension %d; "
                        "encoding them again", path.name,
                        f"{tuple(feats.shape)} (non-finite values?)" if isinstance(feats, torch.Tensor)
                        else type(feats).__name__, len(texts), dim or -1)
            feats = None
        if feats is None:
            feats = self._encode_text_uncached(texts, templates)
            if self.text_cache:
                atomic_torch_save(feats, path)
        self._text_memo[key] = feats
        return feats.to(self.device)

    def _encode_text_uncached(self, texts: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.embed_dim)
        prompts = [t.format(c) for c in texts for t in templates] if templates else texts
        chunks = []
        starts = range(0, len(prompts), _TEXT_BATCH)
        bar = self.progress and len(prompts) >= _PROGRESS_MIN_PROMPTS
        for i in tqdm(starts, desc=f"text encoding ({len(prompts)} prompts)", unit="batch",
                      disable=not bar):
            tokens = self.tokenizer(prompts[i:i + _TEXT_BATCH]).to(self.device)
            chunks.append(F.normalize(self.clip.encode_text(tokens).float(), dim=-1))
        feats = torch.cat(chunks)
        if templates:
            feats = F.normalize(feats.view(len(texts), len(templates), -1).mean(dim=1), dim=-1)
        return feats.cpu()

    # ---- the adapter hook -----------------------------------------------------------------
    def set_adapter(self, adapter: Optional[nn.Module], prototypes: torch.Tensor, owner: str = "") -> None:
        """Install a feature adapter: from now on ``forward`` classifies ``g(v)`` against
        ``prototypes`` (see the module docstring); replaces any adapter installed before.

        The adapter is not registered as a sub-module (``state_dict()`` and ``net.to()`` stay
        CLIP's); it runs on the device of ``prototypes``.
        """
        prototypes = prototypes.detach().float()
        if prototypes.ndim != 2 or prototypes.shape[1] != self.embed_dim:
            raise ValueError(f"adapter prototypes must have shape [C, {self.embed_dim}], got "
                             f"{tuple(prototypes.shape)}")
        if prototypes.shape[0] != len(self.class_names):
            raise ValueError(f"{prototypes.shape[0]} adapter prototypes for {len(self.class_names)} "
                             "ID classes: one per class, in label order")
        if adapter is not None:
            adapter.eval()
        self.adapter_hook = AdapterHook(adapter, F.normalize(prototypes, dim=-1), owner)
        if adapter is None:
            log.info("classifier hook installed on the net by %s: forward() now classifies raw CLIP "
                     "features against its prototypes (no adapter)", owner or "a caller")
        else:
            log.info("adapter hook installed on the net by %s: forward() now classifies adapted "
                     "features", owner or "a caller")

    def clear_adapter(self) -> None:
        """Remove the adapter hook: ``forward`` is zero-shot CLIP again (no-op without one)."""
        if self.adapter_hook is not None:
            log.info("adapter hook of %s removed: forward() is zero-shot CLIP again",
                     self.adapter_hook.owner or "a caller")
        self.adapter_hook = None

    @contextmanager
    def adapted(self, adapter: Optional[nn.Module], prototypes: torch.Tensor,
                owner: str = "") -> Iterator["CLIPNet"]:
        """``with net.adapted(g, mu): ...`` installs the hook and restores the previous state
        (zero-shot or another hook) on exit."""
        previous = self.adapter_hook
        self.set_adapter(adapter, prototypes, owner)
        try:
            yield self
        finally:
            self.adapter_hook = previous

    # ---- the classifier as OpenOOD's linear head ---------------------------------------------
    def head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` of the classifier ``forward`` applies now: ``W = logit_scale * t`` (zero-shot,
        ``t`` the class text features) or ``logit_scale * mu`` (adapter hook), ``b = 0``."""
        hook = self.adapter_hook
        protos = self.class_text_features if hook is None else hook.prototypes
        weight = (self.logit_scale.to(protos.device) * protos.float()).detach()
        return weight, torch.zeros(weight.shape[0], device=weight.device)

    def get_fc(self):
        """OpenOOD's ``get_fc()``: ``(weight [C, d], bias [C])`` as float32 numpy arrays."""
        weight, bias = self.head()
        return weight.cpu().numpy(), bias.cpu().numpy()

    def get_fc_layer(self) -> nn.Linear:
        """OpenOOD's ``get_fc_layer()``: an ``nn.Linear`` holding :meth:`head` (a fresh copy on
        each call, so it follows the adapter hook; frozen); ``fc(feature) == net(x)``."""
        weight, bias = self.head()
        fc = nn.Linear(weight.shape[1], weight.shape[0]).to(weight.device)
        with torch.no_grad():
            fc.weight.copy_(weight)
            fc.bias.copy_(bias)
        return fc.requires_grad_(False)

    @property
    def fc(self) -> nn.Linear:
        """The head as OpenOOD's ResNets name it (``net.fc``: fDBD, NCI, ReactNet.get_fc)."""
        return self.get_fc_layer()

    def _classify(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hook = self.adapter_hook
        if hook is None:
            feats = features.float().to(self.device)
        else:
            feats = features.float().to(hook.prototypes.device)
            if hook.adapter is not None:
                feats = F.normalize(hook.adapter(feats).float(), dim=-1)
        weight, bias = self.head()
        return F.linear(feats, weight, bias), feats

    @torch.no_grad()
    def classify_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, features used)`` for raw unit image features: ``(W v, v)`` with
        ``W = logit_scale * t`` zero-shot, ``(W' g(v), g(v))`` with ``W' = logit_scale * mu`` under
        the adapter hook; what ``forward`` returns after ``encode_image`` (so cached features give
        OpenOOD's ACC too)."""
        return self._classify(features)

    def forward(self, x: torch.Tensor, return_feature: bool = False, return_feature_list: bool = False):
        """``logits``; ``(logits, feature)`` with ``return_feature`` (the module docstring's
        contract). The third argument is OpenOOD's (its ReactNet/ASHNet wrappers pass it)."""
        if return_feature_list:
            raise NotImplementedError(
                "CLIPNet has one feature layer (the image embedding): postprocessors that read a "
                "ResNet's per-stage feature maps (return_feature_list: gram, mds_ensemble, gmm, rd4ad, "
                "grood) cannot run on it; see docs/openood.md for those that can")
        logits, feats = self._classify(self._embed(x))
        return (logits, feats) if return_feature else logits

    def forward_threshold(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        """ReAct (Sun et al., NeurIPS 2021): ``W min(feature, threshold) + b``, the feature being
        the image embedding the text classifier reads (OpenOOD's ReactNet computes the same)."""
        _, feats = self._classify(self._embed(x))
        weight, bias = self.head()
        return F.linear(feats.clip(max=threshold), weight, bias)


def build_clip_net(model: str = "ViT-B-16", pretrained: str | None = "openai",
                   class_names: str | Sequence[str] = "imagenet",
                   templates: Sequence[str] = MCM_TEMPLATES, device: str | torch.device = "cpu",
                   seed: int = 0, text_cache: bool = True, progress: bool = True) -> CLIPNet:
    """Build a :class:`CLIPNet`.

    Args:
        model: open_clip model name (``'ViT-B-16'``) or path to a local open_clip JSON config.
        pretrained: open_clip tag (``'openai'``), a local checkpoint path, or ``'none'`` for an
            explicitly requested random initialisation (tests and smoke runs only; it warns).
        class_names: ``'imagenet'`` (CLIP's cleaned ImageNet-1K names) or a list of names.
        templates: prompt templates for the ID classifier (MCM: ``'a photo of a {}.'``).
        device: where the model runs.
        seed: seed of the random initialisation when ``pretrained='none'``.
        text_cache: cache text features on disk, keyed by model, weights and prompts.
        progress: a progress bar while encoding many texts (``CLIPNet.progress``).
    """
    import open_clip

    check_pretrained(pretrained)
    clip, preprocess = _create_open_clip(model, pretrained, seed)
    _register_local_model_configs()
    name = Path(model).stem if model.endswith(".json") else model
    tokenizer = open_clip.get_tokenizer(name)
    identity = f"{_model_identity(model)}|{_weights_identity(pretrained, seed)}"
    clip = clip.to(device)
    net = CLIPNet(clip, tokenizer, preprocess, resolve_class_names(class_names), templates,
                  identity, text_cache=text_cache, progress=progress)
    net.random_weights = is_random_init(pretrained)
    return net
