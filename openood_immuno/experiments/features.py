"""The body of ``openood-immuno features``: cache the CLIP features of benchmark lists on one
process or, under ``torchrun``, on every rank (the sharding is
:func:`openood_immuno.data.distributed.extract_lists`)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from openood_immuno.data.benchmarks import NUM_CLASSES, ListSpec, benchmark_lists
from openood_immuno.data.decode_options import DecodeOptions
from openood_immuno.data.distributed import extract_lists, rank_world
from openood_immuno.data.lists import ImglistDataset
from openood_immuno.models.clip_net import build_clip_net
from openood_immuno.models.local_tokens import check_patch_tokens


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
    specs = _select(args.lists, benchmark_lists(args.id_name, args.extra_ood))
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
        if args.patch_features:   # a ResNet CLIP has no patch tokens: say so before any image is read
            check_patch_tokens(net.clip.visual, args.model)
        num_classes = NUM_CLASSES.get(args.id_name)
        datasets = {n: ImglistDataset(args.data_root, s, net.preprocess, num_classes)
                    for n, s in specs.items()}
        entries = extract_lists(net, datasets, options, local=args.patch_features)
        if rank_world()[0] == 0:
            for name, path in entries.items():
                print(f"{name}: {len(datasets[name])} images -> {path}", flush=True)
    finally:
        if started:
            dist.destroy_process_group()
    return 0
