"""The tensor decode path against the reference PIL preprocessing, on the minibench's real JPEGs."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from openood_immuno.data.benchmarks import BENCHMARKS
from openood_immuno.data.lists import ImglistDataset
from openood_immuno.data.benchmarks import ListSpec

IMAGENET_ID, IMAGENET_OOD_VAL = BENCHMARKS["imagenet"].id, BENCHMARKS["imagenet"].ood_val
from openood_immuno.data.decode import (DecodeOptions, TensorImageLoader, TensorPreprocess,
                                   make_image_loader, read_bytes)
from openood_immuno.data.features import dataset_cache_key, extract_features


def _pil_crop(preprocess, path) -> torch.Tensor:
    """The reference pipeline up to the uint8 crop (Resize, CenterCrop), as ``[3, h, w]``."""
    img = Image.open(path).convert("RGB")
    for t in preprocess.transforms[:2]:
        img = t(img)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


@pytest.mark.parametrize("spec", [IMAGENET_ID["val"], IMAGENET_OOD_VAL], ids=["imagenet", "cifar32"])
def test_tensor_pixels_within_two_grey_levels_of_pil(tiny_net, minibench, spec):
    ds = ImglistDataset(str(minibench), spec, tiny_net.preprocess, 1000)
    pre = TensorPreprocess.from_transform(tiny_net.preprocess)
    paths = [ds.image_path(i) for i in range(50)]
    decoded = pre.decode([read_bytes(p) for p in paths])
    assert all(torch.equal(img, torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1))
               for img, p in zip(decoded, paths))  # decoding is bit-equal to PIL's on the CPU
    ref = torch.stack([_pil_crop(tiny_net.preprocess, p) for p in paths])
    diff = (torch.stack([pre.resize_crop(img) for img in decoded]).int() - ref.int()).abs()
    assert diff.max() <= 2 and (diff > 0).float().mean() < 0.01  # resampling differs slightly
    batch = next(iter(make_image_loader(ds, "cpu", DecodeOptions("tensor", batch_size=50, num_workers=0))))
    norm = tiny_net.preprocess.transforms[-1]   # normalisation = ToTensor + Normalize
    assert batch["data"].shape == (50, 3, 224, 224)
    assert torch.allclose(batch["data"], norm(ref.float() / 255), atol=2.01 / 255 / min(norm.std))


def test_tensor_features_close_to_pil_and_cached_under_their_own_key(tiny_net, minibench, monkeypatch):
    ds = ImglistDataset(str(minibench), IMAGENET_ID["val"], tiny_net.preprocess, 1000)
    pil = extract_features(tiny_net, make_image_loader(ds, "cpu", DecodeOptions(batch_size=50,
                                                                                num_workers=0)),
                           progress=False)
    loader = make_image_loader(ds, "cpu", DecodeOptions("tensor", batch_size=50, num_workers=1,
                                                        prefetch_factor=2))
    assert isinstance(loader, TensorImageLoader) and len(loader) == 2
    tensor = extract_features(tiny_net, loader, progress=False)
    assert torch.equal(tensor.labels, pil.labels) and tensor.image_paths == pil.image_paths
    cos = (tensor.features * pil.features).sum(dim=1)
    assert cos.min() > 0.999
    assert (tensor.features - pil.features).abs().max() < 0.05
    key_tensor, key_pil = dataset_cache_key(tiny_net, loader.dataset), dataset_cache_key(tiny_net, ds)
    assert key_tensor and key_pil and key_tensor != key_pil
    monkeypatch.setattr(tiny_net, "encode_image", lambda x: pytest.fail("cached features recomputed"))
    again = extract_features(tiny_net, make_image_loader(ds, "cpu", DecodeOptions("tensor", batch_size=7,
                                                                                  num_workers=0)),
                             progress=False)
    assert torch.equal(again.features, tensor.features)


def test_png_decodes_and_a_corrupt_file_is_named(tiny_net, minibench, tmp_path):
    src = minibench / "images_largescale" / "imagenet_1k" / "val"
    names = sorted(p.name for p in src.iterdir())[:3]
    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    (root / "lists").mkdir()
    shutil.copy(src / names[0], root / "imgs" / "a.jpg")
    buf = io.BytesIO()
    Image.open(src / names[1]).convert("L").save(buf, format="PNG")   # grayscale PNG -> RGB
    (root / "imgs" / "b.png").write_bytes(buf.getvalue())
    (root / "lists" / "l.txt").write_text("a.jpg 0\nb.png 1\n")
    ds = ImglistDataset(str(root), ListSpec("l", "imgs", "lists/l.txt"), tiny_net.preprocess, 1000)
    batch = next(iter(make_image_loader(ds, "cpu", DecodeOptions("tensor", num_workers=0))))
    assert batch["data"].shape == (2, 3, 224, 224) and batch["label"].tolist() == [0, 1]
    assert torch.allclose(batch["data"][1, 0], batch["data"][1, 1], atol=0.2)  # gray in all channels
    (root / "imgs" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(RuntimeError, match=r"a\.jpg' is corrupt"):
        next(iter(make_image_loader(ds, "cpu", DecodeOptions("tensor", num_workers=0))))


def test_options_and_unsupported_pipelines_are_refused(tiny_net):
    with pytest.raises(ValueError, match="decode backend 'nvidia' is not valid"):
        DecodeOptions("nvidia")
    with pytest.raises(ValueError, match="needs backend='tensor'"):
        DecodeOptions("pil", "cuda")
    with pytest.raises(ValueError, match="use decode backend 'pil'"):
        TensorPreprocess.from_transform(T.Compose([T.RandomResizedCrop(224), T.ToTensor()]))
    pre = TensorPreprocess.from_transform(tiny_net.preprocess)
    assert (pre.size, pre.crop, pre.interpolation) == (224, (224, 224), "bicubic")
    assert "0x" not in repr(pre) and "TensorPreprocess" in repr(pre)
