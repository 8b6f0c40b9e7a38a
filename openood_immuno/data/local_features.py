"""Per-patch (local) image features beside the global ones, for scorers that read them (GL-MCM).

A postprocessor that reads local features says so (``needs_local_features``); the runner and
:class:`~openood_immuno.data.features.LazyFeatures` then extract them in the same backbone pass
as the global features (``net.encode_image_local``: one tower pass gives both) and cache them
in their own entry, keyed apart from the global-only one (:func:`local_entry_key`), so a
global-only entry is never taken for one with local features. Both routes (cached features and
OpenOOD's ``postprocess(net, data)``) round local features to :data:`LOCAL_DTYPE` with
:func:`encode_with_local`, so they score the same numbers.

**Storage.** Local features are unit vectors stored as float16 (:data:`LOCAL_DTYPE`; each
component rounded with a relative error of at most 2**-11); scores are computed in float32 from
the stored values. Measured effect (docs/glmcm.md): cosines move by at most 4.9e-5, GL-MCM scores
by at most 2.9e-8 at T = 1. Bytes per image: ``P * d * 2`` (:func:`local_bytes_per_image`),
196 x 512 x 2 = 200,704 for ViT-B/16 at 224 (10.04 GB for 50,000 images).
"""
from __future__ import annotations

from typing import Optional

import torch

from openood_immuno.core.cache import content_key

LOCAL_DTYPE = torch.float16
LOCAL_FORMAT = "local-v1-fp16"   # part of a local entry's key: a new format never reads an old entry


def local_entry_key(global_key: str) -> str:
    """The cache key of the entry holding global *and* local features of a list."""
    return content_key(global_key, LOCAL_FORMAT)


def local_bytes_per_image(n_patches: int, dim: int) -> int:
    """Cache bytes of one image's local features (``n_patches x dim`` at :data:`LOCAL_DTYPE`)."""
    return n_patches * dim * torch.finfo(LOCAL_DTYPE).bits // 8


def require_local_net(net, who: str) -> None:
    """One line when ``net`` cannot give local features (no ``encode_image_local``)."""
    if not hasattr(net, "encode_image_local"):
        raise TypeError(f"{who} needs local (per-patch) image features: use a CLIP net built by "
                        f"openood_immuno.build_clip_net with a ViT model, got a {type(net).__name__} "
                        "without encode_image_local")


@torch.no_grad()
def encode_with_local(net, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(global [B, d] float32, local [B, P, d] LOCAL_DTYPE)``, unit norm, one backbone pass."""
    require_local_net(net, "local feature extraction")
    features, local = net.encode_image_local(images)
    return features, local.to(LOCAL_DTYPE)


def local_mismatch(entry, n: int) -> Optional[str]:
    """Why a cache ``entry`` cannot serve local features for ``n`` images, or ``None``."""
    local = entry.get("local") if hasattr(entry, "get") else None
    if not isinstance(local, torch.Tensor):
        return "it holds no local features"
    if local.ndim != 3 or local.shape[0] != n or local.dtype != LOCAL_DTYPE:
        return f"its local features have shape {tuple(local.shape)} and dtype {local.dtype} for {n} images"
    return None
