"""Feature extraction spread over processes with ``torch.distributed`` (``torchrun``).

    torchrun --nproc_per_node N -m openood_immuno.cli features --data-root DATA --lists all
    openood-immuno features --data-root DATA --lists test_imagenet,ninco   # 1 process

For every image list (in the order given):

1. all ranks look for the list's final cache entry, ``features/<key>.pt`` with ``key =
   dataset_cache_key(net, dataset)``: the entry :func:`openood_immuno.data.features.extract_features`
   writes and ``openood-immuno eval`` reads. If it exists and matches the list exactly
   (:class:`~openood_immuno.data.features.ListIdentity`, rank 0 decides for all) the list is done;
2. rank ``r`` of ``W`` encodes the contiguous block ``[r n / W, (r + 1) n / W)`` of the list and
   writes it atomically to ``feature_shards/<key>.rank<r>-of-<W>.pt``; a shard already on disk
   (an earlier, interrupted run with the same ``W``) is loaded instead of recomputed;
3. after a barrier, rank 0 concatenates the shards in rank order, writes the final entry
   atomically and removes the shards; a second barrier ends the list.

With ``local`` (``features --patch-features``; not ``--local``, which torchrun would take for its own
``--local-ranks-filter``) every step also carries GL-MCM's per-patch features
(:mod:`~openood_immuno.data.local_features`, same pass), under the local entry's own key: the
entry ``eval --postprocessors glmcm`` reads.

The cache folder (``$OPENOOD_IMMUNO_CACHE``) must be one folder every rank sees (on several
nodes: a shared file system). Backend ``gloo`` on CPU, ``nccl`` on GPUs (rank ``r`` uses
``cuda:LOCAL_RANK``); without ``torchrun`` the command runs as one process (W = 1). The command
line is :mod:`openood_immuno.cli.features`; its body is
:func:`openood_immuno.experiments.features.run_features`.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Mapping

import torch
import torch.distributed as dist

from openood_immuno.core.cache import atomic_torch_save, cache_dir, torch_load_cached
from .lists import ImglistDataset
from .decode import make_image_loader
from .decode_options import DecodeOptions
from .features import ListIdentity, dataset_cache_key, extract_features, load_entry
from .local_features import LOCAL_DTYPE, local_entry_key, local_mismatch

log = logging.getLogger(__name__)


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(device: torch.device) -> None:
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            index = device.index if device.index is not None else torch.cuda.current_device()
            dist.barrier(device_ids=[index])
        else:
            dist.barrier()


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous block ``[start, stop)`` of ``n`` items that ``rank`` of ``world_size`` owns."""
    return rank * n // world_size, (rank + 1) * n // world_size


def shard_path(key: str, rank: int, world_size: int) -> Path:
    return cache_dir("feature_shards") / f"{key}.rank{rank}-of-{world_size}.pt"


def _shard_dataset(dataset: ImglistDataset, start: int, stop: int) -> ImglistDataset:
    part = copy.copy(dataset)
    part.samples, part.imglist = dataset.samples[start:stop], dataset.imglist[start:stop]
    return part


def _encode_shard(net, dataset: ImglistDataset, key: str, rank: int, world_size: int,
                  options: DecodeOptions, progress: bool, local: bool = False) -> None:
    """Write this rank's shard of ``dataset`` unless a complete one, matching its block of the
    list exactly (:class:`~openood_immuno.data.features.ListIdentity`), is already on disk (with
    ``local``: the per-patch features too, in the same pass)."""
    path = shard_path(key, rank, world_size)
    start, stop = shard_bounds(len(dataset), rank, world_size)
    block = _shard_dataset(dataset, start, stop)
    identity = ListIdentity.of(block)   # before any image is read
    done = torch_load_cached(path)
    if done is not None and (done.get("start"), done.get("stop")) == (start, stop):
        why = identity.mismatch(done) or (local_mismatch(done, stop - start) if local else None)
        if why is None:
            log.info("features %s: shard %d/%d (%d images) already on disk", dataset.name, rank,
                     world_size, stop - start)
            return
        log.warning("features %s: shard %d/%d on disk not used: %s; encoding it again",
                    dataset.name, rank, world_size, why)
    if stop > start:
        loader = make_image_loader(block, net.device, options)
        fs = extract_features(net, loader, f"{dataset.name} [{rank}/{world_size}]", progress, cache=False,
                              local=local)
        feats, labels, paths, patches = fs.features, fs.labels, fs.image_paths, fs.local
    else:  # more ranks than images
        feats, labels, paths = torch.zeros(0, net.embed_dim), torch.zeros(0, dtype=torch.long), []
        patches = torch.zeros(0, 0, net.embed_dim, dtype=LOCAL_DTYPE) if local else None
    atomic_torch_save({"features": feats, "labels": labels, "image_paths": paths,
                       "start": start, "stop": stop, "list": identity.entry_fields(),
                       **({"local": patches} if local else {})}, path)


def _assemble(key: str, n: int, world_size: int, final: Path, name: str, identity: ListIdentity,
              local: bool = False) -> None:
    """Rank 0: the final entry from the shards, in rank order; then remove the shards."""
    parts = []
    for rank in range(world_size):
        shard = torch_load_cached(shard_path(key, rank, world_size))
        if shard is None or (shard["start"], shard["stop"]) != shard_bounds(n, rank, world_size):
            raise RuntimeError(f"features {name}: shard {rank} of {world_size} is missing from "
                               f"{cache_dir('feature_shards')}: every rank must see the same cache "
                               "folder (set OPENOOD_IMMUNO_CACHE to a shared file system)")
        parts.append(shard)
    entry = {"features": torch.cat([p["features"] for p in parts]),
             "labels": torch.cat([p["labels"] for p in parts]),
             "image_paths": [q for p in parts for q in p["image_paths"]],
             "list": identity.entry_fields()}
    if local:   # every shard's [rows, P, d]; a rank without images wrote [0, 0, d]
        entry["local"] = torch.cat([p["local"] for p in parts if p["local"].shape[0]])
    atomic_torch_save(entry, final)
    for rank in range(world_size):
        shard_path(key, rank, world_size).unlink(missing_ok=True)


def extract_lists(net, datasets: Mapping[str, ImglistDataset], options: DecodeOptions = DecodeOptions(),
                  progress: bool = True, local: bool = False) -> dict[str, Path]:
    """Cache the features of every dataset, sharded over the ranks of the default process group.

    Returns ``name -> final cache entry`` (the path ``extract_features`` reads; with ``local``,
    the entry that also holds the per-patch features GL-MCM reads, its own key). Works without a
    process group (one process). Every rank must call it with the same datasets.
    """
    rank, world_size = rank_world()
    device = torch.device(net.device)
    entries = {}
    for name, dataset in datasets.items():
        key = dataset_cache_key(net, make_image_loader(dataset, device, options).dataset)
        if key is None:
            raise ValueError(f"image list {name!r} cannot be keyed (no imglist/data_dir): it cannot "
                             "be cached")
        key = local_entry_key(key) if local else key
        final = cache_dir("features") / f"{key}.pt"
        identity = ListIdentity.of(dataset) if rank == 0 else None   # before any image is read
        done = [rank == 0 and load_entry(final, identity, name, local) is not None]
        _barrier(device)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast_object_list(done, src=0,   # one decision for every rank
                                       device=device if dist.get_backend() == "nccl" else None)
        if not done[0]:
            _encode_shard(net, dataset, key, rank, world_size, options, progress and rank == 0, local)
            _barrier(device)
            if rank == 0:
                _assemble(key, len(dataset), world_size, final, name, identity, local)
                log.info("features %s: %d images from %d ranks -> %s", name, len(dataset),
                         world_size, final)
            _barrier(device)
        elif rank == 0:
            log.info("features %s: already cached (%s)", name, final)
        entries[name] = final
    return entries
