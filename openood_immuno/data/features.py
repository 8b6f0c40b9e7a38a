"""Image features computed once per (model, weights, preprocessing, image list) and cached.

Scoring K postprocessors then costs one backbone pass: every scorer in this package works
on L2-normalised CLIP image features. The cache key (:func:`dataset_cache_key`) covers the
net's identity (model and weights; a checkpoint by its content), the preprocessing
(:func:`transform_fingerprint`: the transform's output on a fixed probe image plus its
structure, class names and parameters), the image folder and the exact list lines. An entry
also records its list (:class:`ListIdentity`): the line count and digest, each row's image,
and each image's identity by git's index rule (size, mtime, ctime, inode; the content digest
of a file whose mtime is not older than the moment that identity was taken). It is used only
if it matches the list exactly, checked on every load; otherwise it is extracted again and
the reason logged (an image replaced in place, even with its times put back; an entry with
fewer or more rows than its list). A transform that is not deterministic (random
augmentation) is never cached: its features are extracted every time, with one warning per
transform. Files are written atomically.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import types
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, SequentialSampler
from tqdm.auto import tqdm

from openood_immuno.core.cache import atomic_torch_save, cache_dir, content_key, torch_load_cached
from .list_identity import ListIdentity, _lines_digest, _list_lines
from .local_features import encode_with_local, local_entry_key, local_mismatch

log = logging.getLogger(__name__)
CACHE_KEY_VERSION = "img-v3"
# torchvision / timm / albumentations names of transforms that draw random numbers
RANDOM_TRANSFORMS = ("Random", "ColorJitter", "AutoAugment", "RandAugment", "TrivialAugment", "AugMix",
                     "GaussianBlur", "ElasticTransform", "GaussianNoise", "Mixup", "CutMix")
_WARNED: set[str] = set()


@dataclass
class FeatureSet:
    """Features of one image list: ``features`` [N, d] (unit norm), ``labels`` [N] (-1 = OOD);
    ``local`` [N, P, d] per-patch features when extracted with ``local=True`` (else ``None``)."""

    name: str
    features: torch.Tensor
    labels: torch.Tensor
    image_paths: list[str] = field(default_factory=list)
    local: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for i in range(0, len(self), batch_size):
            yield (self.features[i:i + batch_size], self.labels[i:i + batch_size],
                   self.image_paths[i:i + batch_size])


def _probe_image() -> Image.Image:
    """A fixed 97x61 RGB probe: colour gradients with a diagonal edge (non-square, so resizing,
    cropping and padding rules all change the output)."""
    y, x = np.mgrid[0:61, 0:97]
    rgb = np.stack([x * 255 // 96, y * 255 // 60, ((x + y) % 23) * 11], -1).astype(np.uint8)
    rgb[x > y * 1.5] //= 2
    return Image.fromarray(rgb, "RGB")


def _structure(obj, depth: int = 0):
    """Class names and parameters of a transform, recursively (``repr`` is often uninformative)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Enum):
        return f"{type(obj).__name__}.{obj.name}"
    if isinstance(obj, (list, tuple)):
        return [_structure(v, depth + 1) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): _structure(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return obj.tolist() if obj.numel() <= 64 else hashlib.sha256(obj.cpu().numpy().tobytes()).hexdigest()
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else hashlib.sha256(obj.tobytes()).hexdigest()
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, functools.partial):
        return {"class": "functools.partial", "func": _structure(obj.func, depth + 1),
                "args": _structure(obj.args, depth + 1), "kwargs": _structure(obj.keywords, depth + 1)}
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    attrs = {k: v for k, v in getattr(obj, "__dict__", {}).items()
             if not k.startswith("_") and k != "training"}
    if isinstance(obj, torch.nn.Module):  # nn.Sequential of transforms keeps them in _modules
        attrs.update(obj._modules)
    if depth >= 8 or not attrs:
        return kind
    return {"class": kind, **{k: _structure(v, depth + 1) for k, v in sorted(attrs.items())}}


def _class_names(structure) -> Iterator[str]:
    if isinstance(structure, dict):
        if "class" in structure:
            yield structure["class"].rsplit(".", 1)[-1]
        for v in structure.values():
            yield from _class_names(v)
    elif isinstance(structure, list):
        for v in structure:
            yield from _class_names(v)
    elif isinstance(structure, str) and "." in structure:
        yield structure.rsplit(".", 1)[-1]


def _output_bytes(out) -> bytes:
    if isinstance(out, dict):  # OpenOOD-style datasets may wrap the image
        out = out.get("data", out)
    arr = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    if arr.dtype.kind == "f":
        arr = np.round(arr.astype(np.float64), 4)  # robust to last-bit float differences
    return str(arr.shape).encode() + arr.tobytes()


def _apply_twice_to_probe(transform) -> tuple[bytes, bytes]:
    """The transform's output on the probe, twice in a row; every random state left as it was."""
    with torch.random.fork_rng(devices=[]):
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            return _output_bytes(transform(_probe_image())), _output_bytes(transform(_probe_image()))
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def transform_fingerprint(transform) -> Optional[str]:
    """Key of a preprocessing: its structure plus its output on a fixed probe image.

    ``None`` when the transform cannot be fingerprinted as deterministic: it contains a known
    random transform (``RandomResizedCrop``, ``ColorJitter``, ...), two applications to the
    probe differ, or it fails on the probe. Random state is left as it was.
    """
    structure = _structure(transform)
    randoms = sorted({n for n in _class_names(structure) if n.startswith(RANDOM_TRANSFORMS)})
    why = f"it contains random transforms {randoms}" if randoms else ""
    if not why:
        try:
            first, second = _apply_twice_to_probe(transform)
            why = "two applications to the same image differ" if first != second else ""
        except Exception as exc:  # a transform that needs other input: cannot be fingerprinted
            why = f"it fails on a probe image ({type(exc).__name__}: {exc})"
    if why:
        tag = content_key(structure)
        if tag not in _WARNED:
            _WARNED.add(tag)
            what = structure.get("class") if isinstance(structure, dict) else structure
            log.warning("features of preprocessing %s are not cached: %s (they are extracted "
                        "again on every use)", what, why)
        return None
    return content_key(structure, hashlib.sha256(first).hexdigest())


def dataset_cache_key(net, dataset) -> Optional[str]:
    """Key of a dataset's features under ``net``; ``None`` if the dataset cannot be keyed
    (no list lines, folder or net identity) or its transform is not deterministic.

    The key names the list (net, preprocessing, folder, lines); whether an entry under it still
    matches the images is :meth:`ListIdentity.mismatch`'s question, asked on every load."""
    imglist = getattr(dataset, "imglist", None)
    data_dir = getattr(dataset, "data_dir", None)
    transform = getattr(dataset, "transform", None) or getattr(dataset, "transform_image", None)
    identity = getattr(net, "identity", None)
    if imglist is None or data_dir is None or identity is None:
        return None
    preprocessing = transform_fingerprint(transform)
    if preprocessing is None:
        return None
    return content_key(CACHE_KEY_VERSION, identity, preprocessing, os.path.abspath(data_dir),
                       _lines_digest(_list_lines(dataset)))


def load_entry(path, list_identity: ListIdentity, name: str, local: bool = False) -> Optional[dict]:
    """The cache entry at ``path`` if it matches ``list_identity`` exactly (and, with ``local``,
    holds local features of every row); ``None`` if absent, or (said in one warning with the
    reason) if it does not: it is then rebuilt."""
    cached = torch_load_cached(path)
    if cached is None:
        return None
    why = list_identity.mismatch(cached) or (local_mismatch(cached, list_identity.n) if local else None)
    if why is not None:
        log.warning("features %s: cache entry %s not used: %s; extracting them again", name,
                    os.path.basename(str(path)), why)
        return None
    return cached


def _image_path(dataset, batch: dict, i: int) -> str:
    name = batch.get("image_name")
    if name is None:
        return ""
    return os.path.join(getattr(dataset, "data_dir", ""), name[i])


@torch.no_grad()
def extract_features(net, loader: DataLoader, name: str = "", progress: bool = True,
                     cache: bool = True, local: bool = False) -> FeatureSet:
    """Encode every image of ``loader`` with ``net.encode_image`` (cached on disk); with
    ``local``, with ``net.encode_image_local`` (global and per-patch features in one pass,
    :mod:`~openood_immuno.data.local_features`; their own cache entry).

    The cache is used only for unshuffled loaders, whose order is the list order.
    """
    dataset = loader.dataset
    name = name or getattr(dataset, "name", "") or "images"
    key = dataset_cache_key(net, dataset) if isinstance(loader.sampler, SequentialSampler) else None
    key = local_entry_key(key) if (key and local) else key
    path = cache_dir("features") / f"{key}.pt" if (cache and key) else None
    if path is not None:
        identity = ListIdentity.of(dataset)   # before any image is read
        cached = load_entry(path, identity, name, local)
        if cached is not None:
            log.info("features %s: %d images from cache (no backbone pass)", name, len(cached["labels"]))
            return FeatureSet(name, cached["features"], cached["labels"], cached["image_paths"],
                              cached.get("local") if local else None)
    was_training = net.training
    net.eval()
    feats, labels, paths, locals_ = [], [], [], []
    for batch in tqdm(loader, desc=f"features {name}", disable=not progress):
        if local:
            g, patches = encode_with_local(net, batch["data"])
            feats.append(g.cpu())
            locals_.append(patches.cpu())
        else:
            feats.append(net.encode_image(batch["data"]).cpu())
        labels.append(torch.as_tensor(batch["label"]).cpu().long())
        paths.extend(_image_path(dataset, batch, i) for i in range(len(batch["data"])))
    net.train(was_training)
    if not feats:
        raise ValueError(f"image list {name!r} has no images: check the list file and data_root")
    out = FeatureSet(name, torch.cat(feats), torch.cat(labels), paths, torch.cat(locals_) if local else None)
    if path is not None and len(out) != identity.n:
        log.warning("features %s: %d rows for the %d lines of its list (a loader that drops "
                    "images): not cached", name, len(out), identity.n)
    elif path is not None:
        atomic_torch_save({"features": out.features, "labels": out.labels, "image_paths": out.image_paths,
                           "list": identity.entry_fields(), **({"local": out.local} if local else {})}, path)
    return out


def check_features(features: torch.Tensor, dim: Optional[int], what: str) -> None:
    """Reject features of another model (dimension ``dim``) or broken ones (NaN/inf), naming the fix."""
    if features.ndim != 2 or (dim is not None and features.shape[1] != dim):
        raise ValueError(f"{what} have shape {tuple(features.shape)} but the embedding dimension is "
                         f"{dim}: features and text must come from the same CLIP model (clear the "
                         "feature cache if the model changed)")
    bad = int((~torch.isfinite(features)).any(dim=1).sum())
    if bad:
        raise ValueError(f"{bad} of {features.shape[0]} {what} contain NaN or inf: check the images "
                         "and the backbone's precision (fp16 overflow), then clear the feature cache")


class ImglistSubset(Dataset):
    """Some images of an imglist dataset, keeping the attributes feature caches key on."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, [int(i) for i in indices]
        self.imglist = [dataset.imglist[i] for i in self.indices]
        self.data_dir = dataset.data_dir
        self.transform = getattr(dataset, "transform", None) or getattr(dataset, "transform_image", None)
        self.name = getattr(dataset, "name", "")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]


def imglist_labels_and_paths(dataset) -> tuple[torch.Tensor, list[str]]:
    """Labels and image paths read from a dataset's list lines (no image is opened)."""
    labels, paths = [], []
    for line in dataset.imglist:
        parts = line.split()
        labels.append(int(parts[1]) if len(parts) > 1 else 0)
        paths.append(os.path.join(dataset.data_dir, parts[0]))
    return torch.tensor(labels, dtype=torch.long), paths


class LazyFeatures(Mapping):
    """``split -> FeatureSet`` computed on first access from a dict of loaders.

    Postprocessors receive this in ``setup()``: methods that need ID training or
    validation features (Immuno-VLM's vaccination, EVT) pull them; zero-shot ones never
    trigger a backbone pass. With ``local``, every split carries local features too.
    """

    def __init__(self, net, loaders: Mapping[str, DataLoader | Callable[[], DataLoader]],
                 progress: bool = True, local: bool = False):
        self._net, self._local = net, local
        self._loaders = dict(loaders or {})  # a callable is opened on first use (list parsed then)
        self._progress = progress
        self._done: dict[str, FeatureSet] = {}

    def _loader(self, split: str) -> DataLoader:
        if split not in self._loaders:
            raise KeyError(f"no '{split}' loader: available {sorted(self._loaders)}")
        if callable(self._loaders[split]) and not isinstance(self._loaders[split], DataLoader):
            self._loaders[split] = self._loaders[split]()
        return self._loaders[split]

    def __contains__(self, split) -> bool:  # no feature extraction just to ask
        return split in self._loaders

    def __getitem__(self, split: str) -> FeatureSet:
        if split not in self._done:
            self._done[split] = extract_features(self._net, self._loader(split), split, self._progress,
                                                 local=self._local)
        return self._done[split]

    def subset(self, split: str, select: Callable[[torch.Tensor, list[str]], torch.Tensor]) -> FeatureSet:
        """Features of the images ``select(labels, paths)`` picks from the list of ``split``.

        The choice is made from the list file alone, so only the chosen images go through the
        backbone (16 shots per class of ImageNet's 1.28M training images: 16,000 images).
        """
        loader = self._loader(split)
        dataset = loader.dataset
        if getattr(dataset, "imglist", None) is None or getattr(dataset, "data_dir", None) is None:
            full = self[split]
            idx = select(full.labels, full.image_paths)
            return FeatureSet(full.name, full.features[idx], full.labels[idx],
                              [full.image_paths[i] for i in idx.tolist()],
                              None if full.local is None else full.local[idx])
        labels, paths = imglist_labels_and_paths(dataset)
        idx = select(labels, paths)
        sub = DataLoader(ImglistSubset(dataset, idx.tolist()), batch_size=loader.batch_size,
                         shuffle=False, num_workers=loader.num_workers)
        return extract_features(self._net, sub, f"{split} subset", self._progress, local=self._local)

    def __iter__(self):
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)
