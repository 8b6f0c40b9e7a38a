"""Image loading for feature extraction: the reference PIL path, or decoding and resizing as tensors.

CLIP's preprocessing (open_clip's ``preprocess``, the reference) is PIL: decode, resize the
shorter side to ``size`` (bicubic, antialiased), centre-crop ``crop``, scale to [0, 1],
normalise with ``mean``/``std``. :class:`TensorPreprocess` does the same steps on uint8 tensors
with ``torchvision.io.decode_jpeg`` (batched; on a GPU ``device='cuda'`` uses nvJPEG) and
``torchvision.transforms.v2.functional.resize`` / ``center_crop``, then normalises on the net's
device. On the CPU decoding is bit-equal to PIL's (both use libjpeg-turbo); torchvision's
antialiased bicubic resize differs from PIL's by at most 2 grey levels in ~0.3% of the values
of the minibench crops, so features are close but not bit-equal: ``backend='pil'`` stays the
default and the fallback. nvJPEG on a GPU may differ further. The feature difference on the
minibench is measured by ``benchmarks/run.py`` and stated in docs/benchmark.md.

:func:`make_image_loader` builds either loader; both yield OpenOOD-style batches (``data``,
``label``, ``image_name``, ``index``) in list order, so
:func:`openood_immuno.data.features.extract_features` caches them. The tensor dataset's ``transform``
is its :class:`TensorPreprocess`, whose repr names the path, so its features are keyed apart
from the PIL path's.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader, Dataset

from .decode_options import DecodeOptions
from .lists import ImglistDataset, check_regular_image

_JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class TensorPreprocess:
    """CLIP preprocessing on tensors (shorter side -> ``size``, centre crop, normalise)."""

    size: int
    crop: tuple[int, int]
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    decode_device: str = "cpu"

    @classmethod
    def from_transform(cls, transform, decode_device: str = "cpu") -> "TensorPreprocess":
        """Read the parameters of open_clip's eval ``Compose`` (Resize, CenterCrop, convert,
        ToTensor, Normalize); any other pipeline is refused with the fix."""
        steps = list(getattr(transform, "transforms", []))
        resize = [t for t in steps if isinstance(t, T.Resize)]
        crop = [t for t in steps if isinstance(t, T.CenterCrop)]
        norm = [t for t in steps if isinstance(t, T.Normalize)]
        known = (T.Resize, T.CenterCrop, T.Normalize, T.ToTensor)
        other = [type(t).__name__ for t in steps if not isinstance(t, known)
                 and type(t).__name__ not in ("MaybeConvertMode", "MaybeToTensor", "function")]
        if (len(resize), len(crop), len(norm)) != (1, 1, 1) or other or not steps:
            raise ValueError(f"the tensor decode path reproduces Resize + CenterCrop + Normalize "
                             f"only, not {transform!r}: use decode backend 'pil'")
        size = resize[0].size
        if isinstance(size, (list, tuple)):
            if len(size) != 1:
                raise ValueError(f"Resize(size={size}) resizes to a fixed shape: use decode backend 'pil'")
            size = size[0]
        if resize[0].max_size is not None or resize[0].antialias is False:
            raise ValueError("the tensor decode path needs Resize(max_size=None, antialias=True): "
                             "use decode backend 'pil'")
        return cls(int(size), tuple(int(s) for s in crop[0].size), resize[0].interpolation.value,
                   tuple(float(m) for m in norm[0].mean), tuple(float(s) for s in norm[0].std),
                   decode_device)

    def __call__(self, image) -> torch.Tensor:
        """One PIL image -> the float ``[3, crop_h, crop_w]`` the batched path gives for it (so the
        object is also a transform, and the feature cache can fingerprint it by its output)."""
        import torchvision.transforms.v2.functional as TF

        pixels = TF.pil_to_tensor(image.convert("RGB"))
        return self.normalize(self.resize_crop(pixels)[None])[0]

    def decode(self, blobs: Sequence[torch.Tensor], device: torch.device | str = "cpu",
               paths: Sequence[str] = ()) -> list[torch.Tensor]:
        """Encoded files (uint8 1-D tensors) -> RGB uint8 ``[3, H, W]`` on ``device``.

        JPEGs are decoded in one batched ``decode_jpeg`` call; other formats (PNG, ...) on the
        CPU with ``decode_image``. An unreadable file raises naming it.
        """
        with warnings.catch_warnings():  # torchvision >= 0.29 warns on every call (TorchCodec)
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            return _decode_rgb(blobs, device, paths)

    def resize_crop(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 ``[3, H, W]`` -> uint8 ``[3, crop_h, crop_w]`` (shorter side to ``size``, centre crop)."""
        import torchvision.transforms.v2.functional as TF

        mode = TF.InterpolationMode(self.interpolation)
        return TF.center_crop(TF.resize(image, [self.size], interpolation=mode, antialias=True),
                              list(self.crop))

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, h, w]`` -> float32 ``(x / 255 - mean) / std`` (ToTensor + Normalize)."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        return (batch.float().div(255) - mean) / std


def _decode_rgb(blobs: Sequence[torch.Tensor], device, paths: Sequence[str]) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    out: list[Optional[torch.Tensor]] = [None] * len(blobs)
    jpeg = [i for i, b in enumerate(blobs) if bytes(b[:2].tolist()) == _JPEG_MAGIC]
    try:
        if jpeg:
            decoded = decode_jpeg([blobs[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)
            for i, img in zip(jpeg, decoded):
                out[i] = img
        for i in (i for i in range(len(blobs)) if out[i] is None):
            out[i] = decode_image(blobs[i], mode=ImageReadMode.RGB).to(device)
    except RuntimeError:
        for i, blob in enumerate(blobs):  # find the bad file
            try:
                decode_image(blob, mode=ImageReadMode.RGB)
            except RuntimeError as exc:
                where = paths[i] if i < len(paths) else f"item {i}"
                raise RuntimeError(f"image {where!r} is corrupt or not an image ({exc}): replace "
                                   "the file or remove its line from the list") from exc
        raise
    return out


def read_bytes(path: str, listed_in: str = "") -> torch.Tensor:
    """A file's bytes as a uint8 tensor; a missing file raises naming the list and the fix, a
    FIFO, device, socket or folder is refused before it is opened (reading one would block)."""
    where = f" (listed in {listed_in})" if listed_in else ""
    check_regular_image(path, listed_in)
    try:
        with open(path, "rb") as fh:
            return torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path!r}{where} does not exist: fix the list or data_root")


class TensorImglistDataset(Dataset):
    """The images of an :class:`~openood_immuno.data.lists.ImglistDataset` for the tensor path.

    With ``decode_device='cpu'`` an item's ``data`` is the resized, cropped uint8 image (decoded
    in the loader worker); with ``'cuda'`` it is the file's bytes, decoded per batch on the GPU.
    Keeps ``imglist``, ``data_dir`` and ``name``; ``transform`` is the :class:`TensorPreprocess`.
    """

    def __init__(self, dataset: ImglistDataset, preprocess: TensorPreprocess):
        self.name, self.list_path, self.data_dir = dataset.name, dataset.list_path, dataset.data_dir
        self.samples, self.imglist = dataset.samples, dataset.imglist
        self.transform = preprocess

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        rel, label = self.samples[index]
        path = os.path.join(self.data_dir, rel)
        data = read_bytes(path, self.list_path)
        if self.transform.decode_device == "cpu":
            data = self.transform.resize_crop(self.transform.decode([data], "cpu", [path])[0])
        return {"data": data, "label": label, "image_name": rel, "index": index}


def _loader_kwargs(options: DecodeOptions) -> dict:
    kwargs = {"batch_size": options.batch_size, "shuffle": False, "num_workers": options.num_workers,
              "pin_memory": options.pin_memory}
    if options.num_workers and options.prefetch_factor:
        kwargs["prefetch_factor"] = options.prefetch_factor
    return kwargs


def _collate(items: list[dict]) -> dict:
    data = [it["data"] for it in items]
    return {"data": torch.stack(data) if data[0].ndim == 3 else data,
            "label": torch.tensor([it["label"] for it in items]),
            "image_name": [it["image_name"] for it in items],
            "index": torch.tensor([it["index"] for it in items])}


class TensorImageLoader:
    """Batches of the tensor path, normalised on ``device`` (decoded there with ``'cuda'``).

    Has the ``dataset``, ``sampler``, ``batch_size`` and ``num_workers`` of its DataLoader, so
    :func:`~openood_immuno.data.features.extract_features` caches it like any unshuffled loader.
    """

    def __init__(self, dataset: TensorImglistDataset, device: torch.device | str, options: DecodeOptions):
        self._loader = DataLoader(dataset, collate_fn=_collate, **_loader_kwargs(options))
        self.dataset, self.device = dataset, torch.device(device)
        self.sampler, self.batch_size = self._loader.sampler, self._loader.batch_size
        self.num_workers = self._loader.num_workers
        self.non_blocking = options.pin_memory

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[dict]:
        pre = self.dataset.transform
        for batch in self._loader:
            if pre.decode_device == "cpu":
                pixels = batch["data"].to(self.device, non_blocking=self.non_blocking)
            else:
                paths = [os.path.join(self.dataset.data_dir, n) for n in batch["image_name"]]
                pixels = torch.stack([pre.resize_crop(img) for img in
                                      pre.decode(batch["data"], self.device, paths)])
            yield {**batch, "data": pre.normalize(pixels)}


def make_image_loader(dataset: ImglistDataset, device: torch.device | str,
                      options: DecodeOptions = DecodeOptions()):
    """An unshuffled loader of ``dataset`` (built with the net's ``preprocess``) on ``device``.

    ``backend='pil'``: the reference DataLoader over ``dataset`` itself (PIL transform in the
    workers); ``'tensor'``: a :class:`TensorImageLoader` with the same preprocessing as tensors.
    """
    if options.backend == "pil":
        return DataLoader(dataset, **_loader_kwargs(options))
    if options.decode_device == "cuda" and torch.device(device).type != "cuda":
        raise ValueError(f"decode_device='cuda' but the net runs on {device}: decode on 'cpu'")
    preprocess = TensorPreprocess.from_transform(dataset.transform, options.decode_device)
    return TensorImageLoader(TensorImglistDataset(dataset, preprocess), device, options)
