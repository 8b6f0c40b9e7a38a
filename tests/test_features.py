import pytest
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


# ---- stale entries are never used (issue 18 B) -------------------------------------------------
def _old_images(tmp_path, n=4):
    """Images of one byte size (BMP), their times an hour back (not racy)."""
    import os
    import time

    from PIL import Image

    from openood_immuno.data.benchmarks import ListSpec

    for d in ("imgs", "benchmark_imglist"):
        (tmp_path / d).mkdir(exist_ok=True)
    hour_ago = time.time_ns() - 3600 * 10**9
    for i in range(n):
        Image.new("RGB", (40, 40), (60 * i, 100, 200)).save(tmp_path / "imgs" / f"{i}.bmp")
        os.utime(tmp_path / "imgs" / f"{i}.bmp", ns=(hour_ago, hour_ago))
    (tmp_path / "benchmark_imglist" / "l.txt").write_text("".join(f"{i}.bmp {i}\n" for i in range(n)))
    return ListSpec("l", "imgs/", "benchmark_imglist/l.txt")


def _loader(tiny_net, tmp_path, spec):
    return make_loader(ImglistDataset(str(tmp_path), spec, tiny_net.preprocess), 8, 0)


def _replace_keeping_size_and_times(path, how, color=(250, 0, 0)):
    """Replace an image by one of the same size, then put its old times back (touch -r)."""
    import os
    import shutil

    from PIL import Image

    st = os.stat(path)
    new = path.with_name("new.bmp")
    Image.new("RGB", (40, 40), color).save(new)
    assert new.stat().st_size == st.st_size
    if how == "cp":        # cp new old: the same inode, new bytes
        shutil.copyfile(new, path)
        new.unlink()
    else:                  # mv new old: another inode
        os.replace(new, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("how", ["cp", "mv"])
def test_an_image_replaced_with_its_size_and_mtime_kept_is_encoded_again(tiny_net, tmp_path, caplog, how):
    """Before: size + mtime was the identity, and ``cp new old; touch -r`` reused the stale feature.
    Now ctime (which touch cannot put back) and the inode count too (git's index rule)."""
    spec = _old_images(tmp_path)
    first = extract_features(tiny_net, _loader(tiny_net, tmp_path, spec), progress=False)
    _replace_keeping_size_and_times(tmp_path / "imgs" / "1.bmp", how)
    with caplog.at_level("INFO", logger="openood_immuno.data.features"):
        second = extract_features(tiny_net, _loader(tiny_net, tmp_path, spec), progress=False)
    assert "from cache" not in caplog.text
    assert "1 image(s) changed since it was written (size, mtime, ctime or inode), e.g. " in caplog.text
    assert "1.bmp" in caplog.text
    assert torch.allclose(first.features[[0, 2, 3]], second.features[[0, 2, 3]], atol=1e-5)
    assert not torch.allclose(first.features[1], second.features[1], atol=1e-3)
    caplog.clear()
    with caplog.at_level("INFO", logger="openood_immuno.data.features"):
        third = extract_features(tiny_net, _loader(tiny_net, tmp_path, spec), progress=False)
    assert "from cache" in caplog.text and torch.equal(third.features, second.features)


def test_a_racy_image_is_checked_by_content(tiny_net, tmp_path, caplog, monkeypatch):
    """git's racy-timestamp rule: an image whose mtime is not older than the moment the entry
    took its identity gets its content digest stored and checked. Shown where stat cannot tell
    (a filesystem whose ctime and inode do not change: simulated), replaced within the tick."""
    import os

    import numpy as np

    from openood_immuno.data import list_identity as features_mod

    real = features_mod.stat_identities
    monkeypatch.setattr(features_mod, "stat_identities",
                        lambda paths: real(paths) * np.array([1, 1, 0, 0]))   # size, mtime only
    spec = _old_images(tmp_path)
    fresh = tmp_path / "imgs" / "2.bmp"
    os.utime(fresh)                                   # just written: racy
    first = extract_features(tiny_net, _loader(tiny_net, tmp_path, spec), progress=False)
    _replace_keeping_size_and_times(fresh, "cp", (0, 250, 0))
    with caplog.at_level("INFO", logger="openood_immuno.data.features"):
        second = extract_features(tiny_net, _loader(tiny_net, tmp_path, spec), progress=False)
    assert "changed within its clock tick (same size and times, other content)" in caplog.text
    assert not torch.allclose(first.features[2], second.features[2], atol=1e-3)


@pytest.mark.parametrize("damage, reason", [
    ("half", r"it holds \[2\] rows for a list of 4 lines"),
    ("more", r"it holds \[6\] rows for a list of 4 lines"),
    ("mixed_rows", r"it holds \[2, 4\] rows for a list of 4 lines"),
    ("reordered", r"its row 0 is '.*1.bmp', the list's line 1 is '.*0.bmp'"),
    ("other_lines", r"it was written for other list lines"),
    ("old_version", r"it records no list identity \(written by an older version\)"),
])
def test_a_cache_entry_that_does_not_match_its_list_exactly_is_rebuilt(tiny_net, tmp_path, caplog,
                                                                         isolated_cache, damage, reason):
    """Before: a loadable entry with fewer rows than its list was used (a list scored on half
    its images). Now every load checks rows against the list and names why it rebuilds."""
    import re

    spec = _old_images(tmp_path)
    first = extract_features(tiny_net, _loader(tiny_net, tmp_path, spec), progress=False)
    from openood_immuno.data.features import dataset_cache_key

    key = dataset_cache_key(tiny_net, ImglistDataset(str(tmp_path), spec, tiny_net.preprocess))
    path = isolated_cache / "features" / f"{key}.pt"
    entry = torch.load(path, weights_only=True)
    pick = {"half": [0, 1], "more": [0, 1, 2, 3, 0, 1], "reordered": [1, 0, 2, 3]}.get(damage)
    if pick is not None:
        entry["features"], entry["labels"] = entry["features"][pick], entry["labels"][pick]
        entry["image_paths"] = [entry["image_paths"][i] for i in pick]
    elif damage == "mixed_rows":
        entry["features"] = entry["features"][:2]
    elif damage == "other_lines":
        entry["list"]["lines_sha256"] = "0" * 64
    else:
        del entry["list"]
    torch.save(entry, path)
    with caplog.at_level("INFO", logger="openood_immuno.data.features"):
        again = extract_features(tiny_net, _loader(tiny_net, tmp_path, spec), progress=False)
    assert "from cache" not in caplog.text
    (line,) = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert re.search(reason, line), line
    assert line.startswith(f"features l: cache entry {key}.pt not used: ")
    assert len(again) == 4 and torch.allclose(again.features, first.features, atol=1e-6)
    assert len(torch.load(path, weights_only=True)["labels"]) == 4           # rebuilt in place


def test_a_loader_that_drops_images_is_not_cached(tiny_net, tmp_path, caplog, isolated_cache):
    from torch.utils.data import DataLoader

    spec = _old_images(tmp_path, n=5)
    ds = ImglistDataset(str(tmp_path), spec, tiny_net.preprocess)
    with caplog.at_level("WARNING", logger="openood_immuno.data.features"):
        out = extract_features(tiny_net, DataLoader(ds, batch_size=2, drop_last=True), progress=False)
    assert len(out) == 4 and "4 rows for the 5 lines of its list" in caplog.text
    full = extract_features(tiny_net, make_loader(ds, 8, 0), progress=False)
    assert len(full) == 5


@pytest.mark.parametrize("damage", ["rows", "dim", "nan"])
def test_a_damaged_text_cache_entry_is_reencoded(tiny_net, isolated_cache, caplog, damage):
    from openood_immuno.core.cache import content_key

    texts = ["a probe for rows", "and another"]
    first = tiny_net.encode_text(texts, ())
    key = content_key("text-v1", tiny_net.identity, (), texts)
    bad = {"rows": first[:1], "dim": first[:, :-1], "nan": first.clone().fill_(float("nan"))}[damage]
    torch.save(bad, isolated_cache / "text" / f"{key}.pt")
    tiny_net._text_memo.clear()
    with caplog.at_level("WARNING", logger="openood_immuno.models.clip_net"):
        again = tiny_net.encode_text(texts, ())
    assert f"it holds {tuple(bad.shape)}" in caplog.text and f"for 2 texts of dimension {tiny_net.embed_dim}" in caplog.text
    assert torch.equal(again, first)
