"""``openood-immuno features``: cache the image features of benchmark lists, on one process or
many (``torchrun --nproc_per_node N -m openood_immuno.cli features ...``)."""
from __future__ import annotations

from openood_immuno.data.decode_options import BACKENDS
from .args import (HelpFormatter, add_data_root_arg, add_id_arg, add_loader_args, add_model_args, check_data_root,
                   check_id_lists, resolve_device)

DESCRIPTION = """\
Compute and cache the CLIP image features of OpenOOD image lists, so that a later
'openood-immuno eval' with the same model reads them instead of running the backbone. Under
torchrun every list is split across the ranks (gloo on CPU, nccl on GPUs); each rank writes its
shard atomically (an interrupted run resumes from the shards on disk) and rank 0 assembles the
one cache entry eval reads. Every rank must see the same cache folder ($OPENOOD_IMMUNO_CACHE).

  torchrun --nproc_per_node 8 -m openood_immuno.cli features --data-root DATA --lists all"""



def add_parser(subparsers) -> None:
    p = subparsers.add_parser("features", help="cache image features (torchrun: spread over processes)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    add_data_root_arg(p)
    p.add_argument("--lists", default="all",
                   help="comma-separated list names (train_imagenet, val_imagenet, test_imagenet, "
                        "val_openimage_o, the OOD sets, --extra-ood names), or 'all'")
    p.add_argument("--extra-ood", action="append", default=[], metavar="NAME=LIST",
                   help="extra OOD list relative to data_root (also a --lists name); repeatable")
    add_model_args(p)
    add_id_arg(p)
    add_loader_args(p)
    p.add_argument("--decode", default="pil", choices=BACKENDS,
                   help="pil: the reference preprocessing (the entries eval reads); tensor: "
                        "openood_immuno.data.decode's tensor path, cached under its own key")
    p.add_argument("--decode-device", default="cpu", choices=["cpu", "cuda"],
                   help="where the tensor path decodes JPEGs")
    p.add_argument("--patch-features", action="store_true",
                   help="also the per-patch features GL-MCM reads (glmcm), same pass, their own cache entry "
                        "(ViT models only; ViT-B/16: 200,704 more bytes per image)")
    p.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"],
                   help="torch.distributed backend (auto: nccl on cuda, gloo on cpu)")
    p.set_defaults(func=run)


def run(args) -> int:
    from openood_immuno.experiments.features import run_features

    check_data_root(args.data_root)
    check_id_lists(args.data_root, args.id_name)   # before any process group or model
    args.device = resolve_device(args.device)
    return run_features(args)
