"""The images of an OpenOOD batch for the MLLM: OpenOOD's per-batch path hands ANTS only the
normalised tensor, so the mined images are recovered from it."""
from __future__ import annotations

import torch
import torchvision.transforms as T
from PIL import Image


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
