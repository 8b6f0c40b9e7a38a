"""The shipped run configs of OpenOOD's ``main.py`` route, ``configs/openood/<id>_clip_<pp>.yml``.

One complete OpenOOD config per (benchmark, postprocessor): the ID and OOD lists of
:mod:`openood_immuno.data.benchmarks` in OpenOOD's ``dataset`` / ``ood_dataset`` format, the CLIP
network and preprocessor (``configs/networks/clip.yml``), OpenOOD's ``test_ood`` pipeline
settings and our postprocessor yml. Image folders are ``'@{data_root}'/...``, OpenOOD's own
reference syntax, so ``--data_root /path/to/data`` (default ``./data``, OpenOOD's convention)
moves the whole benchmark. ID train lists are read unshuffled: the backbone is frozen, and the
postprocessors that use training images draw them themselves (seeded).

The files are generated from those tables and checked against them by the tests; regenerate
them with ``python -m openood_immuno.openood.configs configs/openood``.
"""
from __future__ import annotations

import json

import sys
from importlib import resources
from pathlib import Path

import yaml

from openood_immuno.data.benchmarks import BENCHMARKS, Benchmark
from openood_immuno.core.ymlconfig import available_postprocessors, resolve_postprocessor

EXP_NAME = ("'@{dataset.name}'_'@{network.name}'_'@{pipeline.name}'_'@{evaluator.name}'_"
            "'@{postprocessor.name}'_'@{mark}'/s'@{seed}'/'@{evaluator.ood_scheme}'")
_IMAGE = {"imagenet": (256, 224, "imagenet"), "imagenet200": (256, 224, "imagenet"),
          "cifar10": (32, 32, "cifar10"), "cifar100": (32, 32, "cifar100")}
_SHARED = {"num_workers": "@{num_workers}", "num_gpus": "@{num_gpus}", "num_machines": "@{num_machines}"}


def shipped_config_dir() -> Path:
    return Path(str(resources.files("openood_immuno.configs") / "openood"))


def network_yml() -> Path:
    """``configs/networks/clip.yml`` as installed."""
    return Path(str(resources.files("openood_immuno.configs") / "networks" / "clip.yml"))


def _where(spec) -> dict:
    return {"data_dir": f"'@{{data_root}}'/{spec.data_dir}",
            "imglist_pth": f"'@{{data_root}}'/{spec.imglist}"}


def _datasets(bench: Benchmark) -> dict:
    pre_size, image_size, norm = _IMAGE[bench.name]
    sizes = {"pre_size": pre_size, "image_size": image_size, "interpolation": "bilinear"}
    dataset = {"name": bench.name, "num_classes": bench.num_classes, **sizes,
               "normalization_type": norm, **_SHARED, "split_names": list(bench.id)}
    for split, spec in bench.id.items():
        dataset[split] = {"dataset_class": "ImglistDataset", **_where(spec), "batch_size": 128,
                          "shuffle": False}
    ood = {"name": f"{bench.name}_ood", "num_classes": bench.num_classes,
           "dataset_class": "ImglistDataset", "batch_size": 128, "shuffle": False, **sizes, **_SHARED,
           "split_names": ["val", "nearood", "farood"], "val": _where(bench.ood_val)}
    for split, lists in (("nearood", bench.near), ("farood", bench.far)):
        ood[split] = {"datasets": list(lists), **{n: _where(s) for n, s in lists.items()}}
    return {"dataset": dataset, "ood_dataset": ood}


def run_config(id_name: str, postprocessor: str) -> dict:
    """The complete OpenOOD config of one standard run."""
    bench = BENCHMARKS[id_name]
    clip = yaml.safe_load(network_yml().read_text(encoding="utf-8"))
    clip["network"]["templates"] = list(bench.templates)
    from .registry import resolved_params

    params, sweep = resolved_params(postprocessor)
    # every argument written out (OpenOOD's --KEY VALUE overrides only keys a config sets)
    pp = {**{k: v for k, v in resolve_postprocessor(postprocessor).items()
             if k not in ("postprocessor_args", "postprocessor_sweep")},
          "postprocessor_args": params.as_args(),
          # the grid's lists (only those are swept); no grid: every default list set to null
          "postprocessor_sweep": ({f"{k}_list": list(v) for k, v in sweep.items()} if sweep else
                                  {f"{k}_list": None for k in params.sweep_defaults()})}
    pp = json.loads(json.dumps(pp))  # plain lists and dicts for yaml
    return {"exp_name": EXP_NAME, "output_dir": "./results/", "data_root": "./data",
            "save_output": True, "merge_option": "merge", "mark": "default", "seed": 0,
            "num_gpus": 1, "num_workers": 0, "num_machines": 1, "machine_rank": 0,
            **_datasets(bench), **clip,
            "pipeline": {"name": "test_ood"},
            "evaluator": {"name": "ood", "ood_scheme": "ood"},
            "recorder": {"save_scores": True, "save_csv": True},
            "postprocessor": pp}


def config_name(id_name: str, postprocessor: str) -> str:
    return f"{id_name}_clip_{postprocessor}.yml"


class _Dumper(yaml.SafeDumper):
    """Strings holding OpenOOD's quoted references are written double-quoted, as OpenOOD's ymls do."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style='"' if "'" in value else None))


def render(id_name: str, postprocessor: str) -> str:
    head = (f"# OpenOOD main.py config: {id_name} x CLIP x {postprocessor}. Generated by "
            "openood_immuno.openood.configs; run with\n"
            f"#   python -m openood_immuno.openood.main --config {config_name(id_name, postprocessor)} "
            "--data_root /path/to/openood/data\n")
    return head + yaml.dump(run_config(id_name, postprocessor), Dumper=_Dumper, sort_keys=False, width=110)


def write_all(folder: str | Path) -> list[Path]:
    """Write every (benchmark, postprocessor) config into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for id_name in BENCHMARKS:
        for name in available_postprocessors():
            path = folder / config_name(id_name, name)
            path.write_text(render(id_name, name), encoding="utf-8")
            paths.append(path)
    return paths


if __name__ == "__main__":
    print(f"wrote {len(write_all(sys.argv[1] if len(sys.argv) > 1 else shipped_config_dir()))} configs")
