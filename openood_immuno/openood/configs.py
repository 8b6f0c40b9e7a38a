"""OpenOOD ``main.py`` run configs, built when needed: ``<id>_clip_<postprocessor>.yml``.

One complete OpenOOD config per (benchmark, postprocessor): the ID and OOD lists of
:mod:`openood_immuno.data.benchmarks` in OpenOOD's ``dataset`` / ``ood_dataset`` format, the CLIP
network and preprocessor (``configs/networks/clip.yml`` plus every field of
:class:`~.network_params.CLIPNetworkParams`), OpenOOD's ``test_ood`` pipeline settings and our
postprocessor with every argument and sweep list resolved from its params dataclass and yml.
Every value is written out because OpenOOD's ``--KEY VALUE`` overrides only keys a config sets.
Image folders are ``'@{data_root}'/...``, OpenOOD's own reference syntax, so ``--data_root
/path/to/data`` (default ``./data``, OpenOOD's convention) moves the whole benchmark. ID train
lists are read unshuffled: the backbone is frozen, and the postprocessors that use training
images draw them themselves (seeded).

No such file is shipped (the defaults live in the params dataclasses only): the launcher
(:mod:`.main`) builds one at run time for a bare ``--config`` name of this form, and
``openood-immuno openood-config NAME --id ID [--out FILE]`` prints or writes one for OpenOOD's own
``main.py``.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Optional

import yaml

from openood_immuno.data.benchmarks import BENCHMARKS, Benchmark
from openood_immuno.core.ymlconfig import resolve_postprocessor
from openood_immuno.postprocessors.registry import registrable_postprocessors
from .network_params import CLIPNetworkParams

EXP_NAME = ("'@{dataset.name}'_'@{network.name}'_'@{pipeline.name}'_'@{evaluator.name}'_"
            "'@{postprocessor.name}'_'@{mark}'/s'@{seed}'/'@{evaluator.ood_scheme}'")
_IMAGE = {"imagenet": (256, 224, "imagenet"), "imagenet200": (256, 224, "imagenet"),
          "cifar10": (32, 32, "cifar10"), "cifar100": (32, 32, "cifar100")}
_SHARED = {"num_workers": "@{num_workers}", "num_gpus": "@{num_gpus}", "num_machines": "@{num_machines}"}


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
    wiring = clip["network"]
    network = {"name": wiring["name"], **CLIPNetworkParams().as_args(), "templates": list(bench.templates),
               **{k: v for k, v in wiring.items() if k != "name"}}
    from openood_immuno.postprocessors.registry import resolved_params

    params, sweep = resolved_params(postprocessor)
    # every argument written out (OpenOOD's --KEY VALUE overrides only keys a config sets); a
    # sweep list the yml drops is written as null, so the file alone gives the same APS grid
    pp = {**{k: v for k, v in resolve_postprocessor(postprocessor).items()
             if k not in ("postprocessor_args", "postprocessor_sweep")},
          "postprocessor_args": params.as_args(),
          # every default list, null where not swept (a named list is swept; the rest keep their args)
          "postprocessor_sweep": {f"{k}_list": list(sweep[k]) if k in sweep else None
                                  for k in {**type(params).sweep_defaults(), **sweep}}}
    pp = json.loads(json.dumps(pp))  # plain lists and dicts for yaml
    return {"exp_name": EXP_NAME, "output_dir": "./results/", "data_root": "./data",
            "save_output": True, "merge_option": "merge", "mark": "default", "seed": 0,
            "num_gpus": 1, "num_workers": 0, "num_machines": 1, "machine_rank": 0,
            **_datasets(bench), **clip, "network": network,
            "pipeline": {"name": "test_ood"},
            "evaluator": {"name": "ood", "ood_scheme": "ood"},
            "recorder": {"save_scores": True, "save_csv": True},
            "postprocessor": pp}


SUFFIX = "_clip_"


def config_name(id_name: str, postprocessor: str) -> str:
    return f"{id_name}{SUFFIX}{postprocessor}.yml"


def parse_config_name(name: str) -> Optional[tuple[str, str]]:
    """``(id_name, postprocessor)`` of a bare run-config name such as ``imagenet_clip_mcm.yml``,
    or ``None`` when ``name`` is not one (a path, another benchmark or postprocessor)."""
    if "/" in name or "\\" in name or not name.endswith(".yml") or SUFFIX not in name:
        return None
    id_name, _, postprocessor = name[:-4].partition(SUFFIX)
    if id_name in BENCHMARKS and postprocessor in registrable_postprocessors():
        return id_name, postprocessor
    return None


def name_pattern() -> str:
    """What a run-config name looks like, for messages."""
    return (f"<id>{SUFFIX}<postprocessor>.yml with <id> one of {sorted(BENCHMARKS)} and <postprocessor> "
            f"one of {registrable_postprocessors()}")


class _Dumper(yaml.SafeDumper):
    """Strings holding OpenOOD's quoted references are written double-quoted, as OpenOOD's ymls do."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style='"' if "'" in value else None))


def render(id_name: str, postprocessor: str) -> str:
    """The run config as yml text, with a header saying what produced it and how to run it."""
    name = config_name(id_name, postprocessor)
    head = (f"# OpenOOD main.py config: {id_name} x CLIP x {postprocessor}, every value written out. "
            f"Generated by\n#   openood-immuno openood-config {postprocessor} --id {id_name}\n"
            "# from the params dataclasses and configs/postprocessors/ of openood-immuno; run with\n"
            f"#   openood-immuno openood-main --config {name} --data_root /path/to/openood/data\n")
    return head + yaml.dump(run_config(id_name, postprocessor), Dumper=_Dumper, sort_keys=False, width=110)


def load(id_name: str, postprocessor: str) -> dict:
    """The run config as OpenOOD reads it from the file :func:`render` writes."""
    return yaml.safe_load(render(id_name, postprocessor))
