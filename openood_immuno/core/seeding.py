"""Seeded blocks that leave the caller's random state as it was."""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int):
    """Run a block with every torch generator (CPU and CUDA) seeded with ``seed``.

    ``torch.manual_seed`` also reseeds CUDA; forking only the CPU state (``fork_rng(devices=[])``)
    would leave the caller's CUDA generator changed after the block.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
