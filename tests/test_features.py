import torch

from openood_immuno.benchmarks import BENCHMARKS
from openood_immuno.data import ImglistDataset, make_loader
from openood_immuno.features import LazyFeatures, extract_features
from openood_immuno.immuno.adapter import few_shot_indices

IMAGENET_ID = BENCHMARKS["imagenet"].id


def test_subset_encodes_only_the_drawn_images_and_matches_the_full_draw(tiny_net, minibench, monkeypatch):
    ds = ImglistDataset(str(minibench), IMAGENET_ID["train"], tiny_net.preprocess, 1000)
    loader = make_loader(ds, 64, 0)
    full = extract_features(tiny_net, loader, progress=False)
    select = lambda labels, paths: few_shot_indices(labels, paths, 1, 40, 0)  # noqa: E731
    idx = select(full.labels, full.image_paths)

    encoded = []
    original = tiny_net.encode_image
    monkeypatch.setattr(tiny_net, "encode_image", lambda x: encoded.append(len(x)) or original(x))
    sub = LazyFeatures(tiny_net, {"train": loader}, progress=False).subset("train", select)
    assert sum(encoded) == len(idx) == 40  # the other 260 images never reach the backbone
    assert sub.image_paths == [full.image_paths[i] for i in idx.tolist()]
    assert torch.equal(sub.labels, full.labels[idx])
    assert torch.allclose(sub.features, full.features[idx], atol=1e-5)
    # drawing again from the subset keeps every image: both paths train on the same set
    assert few_shot_indices(sub.labels, sub.image_paths, 1, 40, 0).tolist() == list(range(40))
