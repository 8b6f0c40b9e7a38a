import torch

from openood_immuno.data.benchmarks import BENCHMARKS
from openood_immuno.data.lists import ImglistDataset, make_loader
from openood_immuno.data.features import LazyFeatures, extract_features
from openood_immuno.methods.immuno.vaccination import few_shot_indices

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


class _Preprocessor:
    """Like OpenOOD's preprocessor objects: a callable whose repr says nothing of its size."""

    def __init__(self, size):
        import torchvision.transforms as T

        self.transform = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor()])

    def __call__(self, img):
        return self.transform(img)

    def __repr__(self):
        return "<Preprocessor>"


def _images(tmp_path, n=3):
    from PIL import Image

    from openood_immuno.data.benchmarks import ListSpec

    (tmp_path / "imgs").mkdir(exist_ok=True)
    (tmp_path / "benchmark_imglist").mkdir(exist_ok=True)
    for i in range(n):
        Image.new("RGB", (40 + i, 40), (60 * i, 100, 200)).save(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "benchmark_imglist" / "l.txt").write_text("".join(f"{i}.png {i}\n" for i in range(n)))
    return ListSpec("l", "imgs/", "benchmark_imglist/l.txt")


def test_replacing_an_image_in_place_changes_the_features_used(tiny_net, tmp_path, caplog):
    from PIL import Image

    spec = _images(tmp_path)
    loader = lambda: make_loader(ImglistDataset(str(tmp_path), spec, tiny_net.preprocess), 4, 0)  # noqa: E731
    first = extract_features(tiny_net, loader(), progress=False)
    Image.new("RGB", (90, 50), (250, 0, 0)).save(tmp_path / "imgs" / "1.png")  # same name, new pixels
    with caplog.at_level("INFO", logger="openood_immuno.data.features"):
        second = extract_features(tiny_net, loader(), progress=False)
    assert "from cache" not in caplog.text
    assert torch.allclose(first.features[[0, 2]], second.features[[0, 2]], atol=1e-5)
    assert not torch.allclose(first.features[1], second.features[1], atol=1e-3)
    caplog.clear()
    with caplog.at_level("INFO", logger="openood_immuno.data.features"):
        third = extract_features(tiny_net, loader(), progress=False)
    assert "from cache" in caplog.text and torch.equal(third.features, second.features)


def test_preprocessing_is_keyed_by_its_output_and_structure(tiny_net, tmp_path):
    import torchvision.transforms as T

    from openood_immuno.data.features import dataset_cache_key, transform_fingerprint

    spec = _images(tmp_path)
    key = lambda transform: dataset_cache_key(tiny_net, ImglistDataset(str(tmp_path), spec, transform))  # noqa: E731
    assert repr(_Preprocessor(224)) == repr(_Preprocessor(32))
    assert key(_Preprocessor(224)) != key(_Preprocessor(32))
    assert key(_Preprocessor(224)) == key(_Preprocessor(224))  # the same preprocessing: a cache hit
    norm = [T.Normalize([0.5] * 3, [0.5] * 3), T.Normalize([0.5] * 3, [0.25] * 3)]
    fps = {transform_fingerprint(T.Compose([T.ToTensor(), n])) for n in norm}
    assert len(fps) == 2 and None not in fps
    assert key(tiny_net.preprocess) is not None


def test_random_transforms_are_never_cached_and_said_once(tiny_net, tmp_path, caplog):
    import random

    import numpy as np
    import torchvision.transforms as T

    from openood_immuno.data.features import dataset_cache_key, transform_fingerprint

    class Jitter:  # random without a telling class name: caught by applying it twice
        def __call__(self, img):
            return T.ToTensor()(img) + torch.rand(1)

    spec = _images(tmp_path)
    augment = T.Compose([T.RandomHorizontalFlip(), T.Resize(224), T.CenterCrop(224), T.ToTensor(),
                         T.Normalize([0.5] * 3, [0.5] * 3)])
    with caplog.at_level("WARNING", logger="openood_immuno.data.features"):
        ds = ImglistDataset(str(tmp_path), spec, augment)
        assert dataset_cache_key(tiny_net, ds) is None
        for _ in range(2):
            fs = extract_features(tiny_net, make_loader(ds, 4, 0), progress=False)
            assert fs.features.shape == (3, 64)
        assert transform_fingerprint(Jitter()) is None
        assert transform_fingerprint(torch.nn.Sequential(T.RandomHorizontalFlip(), T.Resize(8))) is None
    warnings = [r.getMessage() for r in caplog.records if "not cached" in r.getMessage()]
    assert len(warnings) == 3, warnings  # one per transform, however often it is used
    assert "random transforms ['RandomHorizontalFlip']" in warnings[0]
    assert "two applications to the same image differ" in warnings[1]
    assert "Sequential are not cached: it contains random transforms ['RandomHorizontalFlip']" in warnings[2]
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    assert transform_fingerprint(Jitter()) is None  # it drew random numbers on the probe...
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert (np.random.get_state()[1] == states[2]).all()  # ...and every random state is as it was
