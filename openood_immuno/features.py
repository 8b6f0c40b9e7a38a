"""Image features computed once per (model, weights, preprocessing, image list) and cached.

Scoring K postprocessors then costs one backbone pass: every scorer in this package works
on L2-normalised CLIP image features. The cache key covers the net's identity, its
preprocessing, the image folder and the exact list lines; files are written atomically.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler
from tqdm.auto import tqdm

from .cache import atomic_torch_save, cache_dir, content_key, torch_load_cached

log = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    """Features of one image list: ``features`` [N, d] (unit norm), ``labels`` [N] (-1 = OOD)."""

    name: str
    features: torch.Tensor
    labels: torch.Tensor
    image_paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for i in range(0, len(self), batch_size):
            yield (self.features[i:i + batch_size], self.labels[i:i + batch_size],
                   self.image_paths[i:i + batch_size])


def _stable_repr(obj) -> str:
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def dataset_cache_key(net, dataset) -> Optional[str]:
    """Key of a dataset's features under ``net``; ``None`` if the dataset cannot be keyed."""
    imglist = getattr(dataset, "imglist", None)
    data_dir = getattr(dataset, "data_dir", None)
    transform = getattr(dataset, "transform", None) or getattr(dataset, "transform_image", None)
    identity = getattr(net, "identity", None)
    if imglist is None or data_dir is None or identity is None:
        return None
    return content_key("img-v1", identity, _stable_repr(transform), os.path.abspath(data_dir),
                       [line.strip() for line in imglist])


def _image_path(dataset, batch: dict, i: int) -> str:
    name = batch.get("image_name")
    if name is None:
        return ""
    return os.path.join(getattr(dataset, "data_dir", ""), name[i])


@torch.no_grad()
def extract_features(net, loader: DataLoader, name: str = "", progress: bool = True,
                     cache: bool = True) -> FeatureSet:
    """Encode every image of ``loader`` with ``net.encode_image`` (cached on disk).

    The cache is used only for unshuffled loaders, whose order is the list order.
    """
    dataset = loader.dataset
    name = name or getattr(dataset, "name", "") or "images"
    key = dataset_cache_key(net, dataset) if isinstance(loader.sampler, SequentialSampler) else None
    path = cache_dir("features") / f"{key}.pt" if (cache and key) else None
    if path is not None:
        cached = torch_load_cached(path)
        if cached is not None:
            log.info("features %s: %d images from cache (no backbone pass)", name, len(cached["labels"]))
            return FeatureSet(name, cached["features"], cached["labels"], cached["image_paths"])
    was_training = net.training
    net.eval()
    feats, labels, paths = [], [], []
    for batch in tqdm(loader, desc=f"features {name}", disable=not progress):
        feats.append(net.encode_image(batch["data"]).cpu())
        labels.append(torch.as_tensor(batch["label"]).cpu().long())
        paths.extend(_image_path(dataset, batch, i) for i in range(len(batch["data"])))
    net.train(was_training)
    if not feats:
        raise ValueError(f"image list {name!r} has no images: check the list file and data_root")
    out = FeatureSet(name, torch.cat(feats), torch.cat(labels), paths)
    if path is not None:
        atomic_torch_save({"features": out.features, "labels": out.labels,
                           "image_paths": out.image_paths}, path)
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
    trigger a backbone pass.
    """

    def __init__(self, net, loaders: Mapping[str, DataLoader | Callable[[], DataLoader]],
                 progress: bool = True):
        self._net = net
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
            self._done[split] = extract_features(self._net, self._loader(split), split, self._progress)
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
                              [full.image_paths[i] for i in idx.tolist()])
        labels, paths = imglist_labels_and_paths(dataset)
        idx = select(labels, paths)
        sub = DataLoader(ImglistSubset(dataset, idx.tolist()), batch_size=loader.batch_size,
                         shuffle=False, num_workers=loader.num_workers)
        return extract_features(self._net, sub, f"{split} subset", self._progress)

    def __iter__(self):
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)
