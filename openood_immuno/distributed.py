"""Feature extraction spread over processes with ``torch.distributed`` (``torchrun``).

    torchrun --nproc_per_node N -m openood_immuno.cli features --data-root DATA --lists all
    openood-immuno features --data-root DATA --lists test_imagenet,ninco   # 1 process

For every image list (in the order given):

1. all ranks look for the list's final cache entry, ``features/<key>.pt`` with ``key =
   dataset_cache_key(net, dataset)``: the entry :func:`openood_immuno.features.extract_features`
   writes and ``openood-immuno eval`` reads. If it exists the list is done;
2. rank ``r`` of ``W`` encodes the contiguous block ``[r n / W, (r + 1) n / W)`` of the list and
   writes it atomically to ``feature_shards/<key>.rank<r>-of-<W>.pt``; a shard already on disk
   (an earlier, interrupted run with the same ``W``) is loaded instead of recomputed;
3. after a barrier, rank 0 concatenates the shards in rank order, writes the final entry
   atomically and removes the shards; a second barrier ends the list.

The cache folder (``$OPENOOD_IMMUNO_CACHE``) must be one folder every rank sees (on several
nodes: a shared file system). Backend ``gloo`` on CPU, ``nccl`` on GPUs (rank ``r`` uses
``cuda:LOCAL_RANK``); without ``torchrun`` the command runs as one process (W = 1). The command
line is :mod:`openood_immuno.cli.features`; :func:`run_features` is its body.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.distributed as dist

from .cache import atomic_torch_save, cache_dir, torch_load_cached
from .data import NUM_CLASSES, ImglistDataset, ListSpec
from .decode import DecodeOptions, make_image_loader
from .features import dataset_cache_key, extract_features

log = logging.getLogger(__name__)


def _rank_world() -> tuple[int, int]:
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
                  options: DecodeOptions, progress: bool) -> None:
    """Write this rank's shard of ``dataset`` unless a complete one is already on disk."""
    path = shard_path(key, rank, world_size)
    start, stop = shard_bounds(len(dataset), rank, world_size)
    done = torch_load_cached(path)
    if done is not None and (done.get("start"), done.get("stop")) == (start, stop):
        log.info("features %s: shard %d/%d (%d images) already on disk", dataset.name, rank,
                 world_size, stop - start)
        return
    if stop > start:
        loader = make_image_loader(_shard_dataset(dataset, start, stop), net.device, options)
        fs = extract_features(net, loader, f"{dataset.name} [{rank}/{world_size}]", progress, cache=False)
        feats, labels, paths = fs.features, fs.labels, fs.image_paths
    else:  # more ranks than images
        feats, labels, paths = torch.zeros(0, net.embed_dim), torch.zeros(0, dtype=torch.long), []
    atomic_torch_save({"features": feats, "labels": labels, "image_paths": paths,
                       "start": start, "stop": stop}, path)


def _assemble(key: str, n: int, world_size: int, final: Path, name: str) -> None:
    """Rank 0: the final entry from the shards, in rank order; then remove the shards."""
    parts = []
    for rank in range(world_size):
        shard = torch_load_cached(shard_path(key, rank, world_size))
        if shard is None or (shard["start"], shard["stop"]) != shard_bounds(n, rank, world_size):
            raise RuntimeError(f"features {name}: shard {rank} of {world_size} is missing from "
                               f"{cache_dir('feature_shards')}: every rank must see the same cache "
                               "folder (set OPENOOD_IMMUNO_CACHE to a shared file system)")
        parts.append(shard)
    atomic_torch_save({"features": torch.cat([p["features"] for p in parts]),
                       "labels": torch.cat([p["labels"] for p in parts]),
                       "image_paths": [q for p in parts for q in p["image_paths"]]}, final)
    for rank in range(world_size):
        shard_path(key, rank, world_size).unlink(missing_ok=True)


def extract_lists(net, datasets: Mapping[str, ImglistDataset], options: DecodeOptions = DecodeOptions(),
                  progress: bool = True) -> dict[str, Path]:
    """Cache the features of every dataset, sharded over the ranks of the default process group.

    Returns ``name -> final cache entry`` (the path ``extract_features`` reads). Works without a
    process group (one process). Every rank must call it with the same datasets.
    """
    rank, world_size = _rank_world()
    device = torch.device(net.device)
    entries = {}
    for name, dataset in datasets.items():
        key = dataset_cache_key(net, make_image_loader(dataset, device, options).dataset)
        if key is None:
            raise ValueError(f"image list {name!r} cannot be keyed (no imglist/data_dir): it cannot "
                             "be cached")
        final = cache_dir("features") / f"{key}.pt"
        _barrier(device)
        if not final.exists():
            _encode_shard(net, dataset, key, rank, world_size, options, progress and rank == 0)
            _barrier(device)
            if rank == 0:
                _assemble(key, len(dataset), world_size, final, name)
                log.info("features %s: %d images from %d ranks -> %s", name, len(dataset),
                         world_size, final)
            _barrier(device)
        elif rank == 0:
            log.info("features %s: already cached (%s)", name, final)
        entries[name] = final
    return entries


def benchmark_lists(extra: Sequence[str] = ()) -> dict[str, ListSpec]:
    """The lists ``openood-immuno eval`` reads, by name (``NAME=LIST`` adds an extra OOD list)."""
    from .runner import BenchmarkLists, parse_extra_ood

    lists = BenchmarkLists(extra=parse_extra_ood(extra))
    return {**{f"{split}_imagenet": spec for split, spec in lists.id.items()},
            f"val_{lists.ood_val.name}": lists.ood_val, **lists.ood}


def _select(names_arg: str, lists: dict[str, ListSpec]) -> dict[str, ListSpec]:
    names = (list(lists) if names_arg.strip() == "all"
             else [n.strip() for n in names_arg.split(",") if n.strip()])
    unknown = [n for n in names if n not in lists]
    if unknown or not names:
        raise ValueError(f"--lists names {unknown or names_arg!r}, which are not lists of the benchmark: "
                         f"use 'all' or some of {sorted(lists)}")
    return {n: lists[n] for n in names}


def run_features(args) -> int:
    """Cache the features of ``args.lists`` (one or many processes); prints one line per list."""
    from .clip_net import build_clip_net

    specs = _select(args.lists, benchmark_lists(args.extra_ood))
    options = DecodeOptions(args.decode, args.decode_device, args.batch_size, args.num_workers,
                            pin_memory=str(args.device).startswith("cuda"))
    for spec in specs.values():  # bad lists fail before any process group or model is built
        path = os.path.join(args.data_root, spec.imglist)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image list {path!r} not found: check --data-root (it must "
                                    "hold OpenOOD's benchmark_imglist/ folder) or --lists")
    device = str(args.device)
    started = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = (args.backend if args.backend != "auto"
                   else "nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend, init_method="env://")
        started = True
    try:
        net = build_clip_net(args.model, args.pretrained, args.id_name, device=device)
        num_classes = NUM_CLASSES.get(args.id_name)
        datasets = {n: ImglistDataset(args.data_root, s, net.preprocess, num_classes)
                    for n, s in specs.items()}
        entries = extract_lists(net, datasets, options)
        if _rank_world()[0] == 0:
            for name, path in entries.items():
                print(f"{name}: {len(datasets[name])} images -> {path}", flush=True)
    finally:
        if started:
            dist.destroy_process_group()
    return 0
