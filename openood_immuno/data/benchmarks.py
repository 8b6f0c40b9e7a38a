"""The image lists of OpenOOD v1.5's four benchmarks, and the MOS four as an OOD preset.

Each :class:`Benchmark` is what ``openood/evaluation_api/datasets.py`` (``DATA_INFO``) defines
for its ``id_name``: the ID train/val/test lists, the OOD validation list of the parameter
search, and the near-OOD and far-OOD test lists, in OpenOOD's order. Paths are relative to
OpenOOD's ``data_root``; every list line is ``relative/path label`` (label -1 for OOD).

=============  ======================  ==============================================
id_name        near-OOD                far-OOD
=============  ======================  ==============================================
imagenet       ssb_hard, ninco         inaturalist, textures, openimage_o
imagenet200    ssb_hard, ninco         inaturalist, textures, openimage_o
cifar10        cifar100, tin           mnist, svhn, texture, places365
cifar100       cifar10, tin            mnist, svhn, texture, places365
=============  ======================  ==============================================

``templates`` are the CLIP prompts of the ID classifier: MCM's ``"a photo of a {}."`` for every
ID set (Ming et al., NeurIPS 2022, Sec. 4), which NegLabel and ANTS keep for the ID classes.

The MOS four (Huang & Li, CVPR 2021; the main table of MCM, NegLabel and ANTS): iNaturalist,
SUN, Places, Textures, as far-OOD lists of an ImageNet-1K run (:data:`MOS_FOUR`). OpenOOD v1.5
ships no lists for them; they are read from this layout under ``data_root``::

    benchmark_imglist/mos/test_inaturalist.txt   images under images_largescale/
    benchmark_imglist/mos/test_sun.txt           images under images_largescale/
    benchmark_imglist/mos/test_places.txt        images under images_largescale/
    benchmark_imglist/mos/test_textures.txt      images under images_classic/

e.g. ``inaturalist_mos/0a1b.jpg -1`` (the 10,000 / 10,000 / 10,000 / 5,640 images MOS released;
Textures here is all of DTD, not OpenOOD's 5,160-image ``textures``).

Immuno-VLM's benchmark (its Table 1; :data:`IMMUNO_VLM_OOD`): ImageNet-1K with ImageNet-O
(Hendrycks et al., CVPR 2021: 2,000 images of 200 ImageNet classes' folders) as near-OOD and
OpenOOD's iNaturalist and Textures as far-OOD. OpenOOD ships no ImageNet-O list; it is read in
OpenOOD's layout from ``benchmark_imglist/imagenet/test_imagenet_o.txt``, images under
``images_largescale/imagenet_o/<wnid>/<file>`` (``openood-immuno imagenet-o-list`` writes it:
:mod:`openood_immuno.data.imagenet_o`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Optional, Sequence

MCM_PROMPT = ("a photo of a {}.",)
RESERVED_SET_NAMES = ("id", "nearood", "farood")  # a table row or scores_id.npz
LARGE, CLASSIC = "images_largescale/", "images_classic/"


@dataclass(frozen=True)
class ListSpec:
    """One image list of the benchmark: where its images live and which file lists them.

    ``id_list``: an ID list, whose labels are class indices (-1, OOD, is refused there).
    ``fix``: how a user makes the list when it is missing (said in the one-line error).
    """

    name: str
    data_dir: str
    imglist: str
    id_list: bool = False
    fix: str = ""


@dataclass(frozen=True)
class Benchmark:
    """One ID set with its OpenOOD v1.5 lists."""

    name: str
    num_classes: Optional[int]
    id: Mapping[str, ListSpec]
    ood_val: ListSpec
    near: Mapping[str, ListSpec]
    far: Mapping[str, ListSpec]
    templates: tuple[str, ...] = MCM_PROMPT
    ood_preset: str = "openood"


def _list(bench: str, split: str, name: str, data_dir: str) -> ListSpec:
    return ListSpec(name, data_dir, f"benchmark_imglist/{bench}/{split}_{name}.txt", id_list=name == bench)


def _imagenet_like(bench: str, num_classes: int) -> Benchmark:
    return Benchmark(
        bench, num_classes,
        id={s: _list(bench, s, bench, LARGE) for s in ("train", "val", "test")},
        ood_val=_list(bench, "val", "openimage_o", LARGE),
        near={n: _list(bench, "test", n, LARGE) for n in ("ssb_hard", "ninco")},
        far={"inaturalist": _list(bench, "test", "inaturalist", LARGE),
             "textures": _list(bench, "test", "textures", CLASSIC),
             "openimage_o": _list(bench, "test", "openimage_o", LARGE)})


def _cifar(bench: str, num_classes: int, other: str) -> Benchmark:
    return Benchmark(
        bench, num_classes,
        id={s: _list(bench, s, bench, CLASSIC) for s in ("train", "val", "test")},
        ood_val=_list(bench, "val", "tin", CLASSIC),
        near={n: _list(bench, "test", n, CLASSIC) for n in (other, "tin")},
        far={n: _list(bench, "test", n, CLASSIC) for n in ("mnist", "svhn", "texture", "places365")})


BENCHMARKS: dict[str, Benchmark] = {
    "imagenet": _imagenet_like("imagenet", 1000),
    "imagenet200": _imagenet_like("imagenet200", 200),
    "cifar10": _cifar("cifar10", 10, "cifar100"),
    "cifar100": _cifar("cifar100", 100, "cifar10"),
}
NUM_CLASSES = {name: b.num_classes for name, b in BENCHMARKS.items()}

MOS_FOUR: Mapping[str, ListSpec] = {
    "inaturalist": ListSpec("inaturalist", LARGE, "benchmark_imglist/mos/test_inaturalist.txt"),
    "sun": ListSpec("sun", LARGE, "benchmark_imglist/mos/test_sun.txt"),
    "places": ListSpec("places", LARGE, "benchmark_imglist/mos/test_places.txt"),
    "textures": ListSpec("textures", CLASSIC, "benchmark_imglist/mos/test_textures.txt"),
}
IMAGENET_O_LIST = "benchmark_imglist/imagenet/test_imagenet_o.txt"
IMAGENET_O_DIR = "imagenet_o"   # images_largescale/imagenet_o/<wnid>/<file>
IMAGENET_O = ListSpec("imagenet_o", LARGE, IMAGENET_O_LIST,
                      fix="download ImageNet-O (imagenet-o.tar, Hendrycks et al.), extract its 200 class "
                          f"folders to DATA_ROOT/{LARGE}{IMAGENET_O_DIR}/ and run `openood-immuno "
                          "imagenet-o-list --data-root DATA_ROOT` (docs/openood.md)")
#: Immuno-VLM's Table 1: ImageNet-O near, OpenOOD's iNaturalist and Textures far
IMMUNO_VLM_OOD = {"near": {"imagenet_o": IMAGENET_O},
                  "far": {n: BENCHMARKS["imagenet"].far[n] for n in ("inaturalist", "textures")}}
OOD_PRESETS = ("openood", "mos", "immuno_vlm")


def get_benchmark(id_name: str, ood: str = "openood") -> Benchmark:
    """The benchmark of ``id_name`` with OpenOOD's OOD lists, or (``ood='mos'``) the MOS four,
    or (``ood='immuno_vlm'``) Immuno-VLM's Table 1 sets (:data:`IMMUNO_VLM_OOD`).

    The MOS four are far-OOD only (no near-OOD rows); their ``farood`` row is the
    four-set average the MCM/NegLabel/ANTS tables report. Both presets are defined for ImageNet-1K.
    """
    if id_name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {id_name!r}: use one of {sorted(BENCHMARKS)}")
    if ood not in OOD_PRESETS:
        raise ValueError(f"unknown OOD preset {ood!r}: use one of {OOD_PRESETS}")
    bench = BENCHMARKS[id_name]
    if ood == "openood":
        return bench
    if id_name != "imagenet":
        sets = "the MOS four are" if ood == "mos" else "Immuno-VLM's ImageNet-O, iNaturalist and Textures are"
        raise ValueError(f"{sets} OOD sets of ImageNet-1K, not of {id_name!r}: use --id imagenet")
    if ood == "immuno_vlm":
        return replace(bench, near=dict(IMMUNO_VLM_OOD["near"]), far=dict(IMMUNO_VLM_OOD["far"]),
                       ood_preset="immuno_vlm")
    return replace(bench, near={}, far=dict(MOS_FOUR), ood_preset="mos")


@dataclass
class BenchmarkLists:
    """The image lists of one benchmark (OpenOOD v1.5 ImageNet-1K by default)."""

    id: Mapping[str, ListSpec] = field(default_factory=lambda: dict(BENCHMARKS["imagenet"].id))
    ood_val: ListSpec = BENCHMARKS["imagenet"].ood_val
    near: Mapping[str, ListSpec] = field(default_factory=lambda: dict(BENCHMARKS["imagenet"].near))
    far: Mapping[str, ListSpec] = field(default_factory=lambda: dict(BENCHMARKS["imagenet"].far))
    extra: Mapping[str, ListSpec] = field(default_factory=dict)

    def __post_init__(self):
        taken = {*self.near, *self.far, *RESERVED_SET_NAMES, self.ood_val.name,
                 *(spec.name for spec in self.id.values())}
        clash = sorted(taken & set(self.extra))
        if clash:
            raise ValueError(f"--extra-ood name(s) {clash} collide with the benchmark's own sets or "
                             f"rows {sorted(taken)}: give the extra list another name (e.g. "
                             f"{clash[0]}_extra=...)")

    @classmethod
    def of(cls, benchmark: Benchmark, extra: Optional[Mapping[str, ListSpec]] = None) -> "BenchmarkLists":
        """The lists of a :class:`~openood_immuno.data.benchmarks.Benchmark` (plus extra OOD lists)."""
        return cls(dict(benchmark.id), benchmark.ood_val, dict(benchmark.near), dict(benchmark.far),
                   dict(extra or {}))

    @property
    def ood(self) -> dict[str, ListSpec]:
        return {**self.near, **self.far, **self.extra}

    def roles(self) -> dict[str, ListSpec]:
        """Every list by its role: ``id_train``, ``id_val``, ``id_test``, ``ood_val``, ``ood:<set>``."""
        return {**{f"id_{split}": spec for split, spec in self.id.items()}, "ood_val": self.ood_val,
                **{f"ood:{name}": spec for name, spec in self.ood.items()}}


_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_extra_ood(items: Iterable[str], data_dir: str = "images_largescale/") -> dict[str, ListSpec]:
    """``NAME=LIST`` pairs (LIST relative to data_root) -> extra OOD lists, e.g. ``imagenet_o=...``."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--extra-ood expects NAME=LIST (LIST relative to data_root), got {item!r}")
        if not _SET_NAME.match(name):
            raise ValueError(f"--extra-ood name {name!r} must be letters, digits, '_', '.' or '-' "
                             "(it names a table row and a file), e.g. imagenet_o=...")
        if name in out:
            raise ValueError(f"--extra-ood names {name!r} twice: give each extra list its own name")
        out[name] = ListSpec(name, data_dir, path)
    return out


def benchmark_lists(id_name: str = "imagenet", extra: Sequence[str] = ()) -> dict[str, ListSpec]:
    """The lists ``openood-immuno eval --id ID_NAME`` reads, by name (``NAME=LIST`` adds an
    extra OOD list)."""
    lists = BenchmarkLists.of(get_benchmark(id_name), parse_extra_ood(extra))
    return {**{f"{split}_{id_name}": spec for split, spec in lists.id.items()},
            f"val_{lists.ood_val.name}": lists.ood_val, **lists.ood}
