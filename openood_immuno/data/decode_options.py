"""How images reach the encoder (:class:`DecodeOptions`) and the decoding backends; torch-free,
so the CLI's parser offers the backends without loading torch (:mod:`.decode` does the work)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

BACKENDS = ("pil", "tensor")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class DecodeOptions:
    """How images reach the encoder.

    ``backend``: ``'pil'`` (reference, default) or ``'tensor'``; ``decode_device``: where the
    tensor path decodes and resizes (``'cpu'`` in the loader workers, or ``'cuda'`` on the net's
    GPU with nvJPEG); ``num_workers``, ``pin_memory``, ``prefetch_factor``: the DataLoader's
    (``prefetch_factor`` only with workers).
    """

    backend: str = "pil"
    decode_device: str = "cpu"
    batch_size: int = 128
    num_workers: int = 2
    pin_memory: bool = False
    prefetch_factor: Optional[int] = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"decode backend {self.backend!r} is not valid: use one of {BACKENDS}")
        if self.decode_device not in ("cpu", "cuda"):
            raise ValueError(f"decode_device {self.decode_device!r} is not valid: use 'cpu' or 'cuda'")
        if self.decode_device == "cuda" and self.backend != "tensor":
            raise ValueError("decode_device='cuda' needs backend='tensor' (PIL decodes on the CPU)")
        if self.decode_device == "cuda" and not _cuda_available():
            raise ValueError("decode_device='cuda' but no CUDA device is available: use 'cpu'")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {self.batch_size}, "
                             f"{self.num_workers}")
