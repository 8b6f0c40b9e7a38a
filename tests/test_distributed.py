"""Feature extraction under torchrun (2 processes, gloo) equals one process and one cache entry."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from openood_immuno.data.benchmarks import BENCHMARKS
from openood_immuno.data.lists import ImglistDataset, make_loader

IMAGENET_ID, IMAGENET_OOD_VAL = BENCHMARKS["imagenet"].id, BENCHMARKS["imagenet"].ood_val
from openood_immuno.data.distributed import extract_lists, shard_bounds, shard_path
from openood_immuno.data.features import ListIdentity, dataset_cache_key, extract_features
from openood_immuno.data.local_features import local_entry_key

LISTS = {"val_imagenet": IMAGENET_ID["val"], "val_openimage_o": IMAGENET_OOD_VAL}


def _datasets(net, root):
    return {n: ImglistDataset(str(root), s, net.preprocess, 1000) for n, s in LISTS.items()}


@pytest.fixture
def small_root(minibench, tmp_path):
    """A data_root with the minibench's images and the first 25 lines of each list (CI time)."""
    root = tmp_path / "root"
    (root / "benchmark_imglist" / "imagenet").mkdir(parents=True)
    for folder in ("images_largescale", "images_classic"):
        (root / folder).symlink_to(minibench / folder)
    for spec in LISTS.values():
        lines = (minibench / spec.imglist).read_text().splitlines()[:25]
        (root / spec.imglist).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
def test_torchrun_two_ranks_write_the_entry_a_single_process_writes(tiny_net, small_root, tmp_path,
                                                                    isolated_cache, monkeypatch, local):
    """With ``--patch-features`` (GL-MCM's per-patch features) the entry is the one ``eval --postprocessors
    glmcm`` reads: its own key, global and local features of one pass."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "text").symlink_to(isolated_cache / "text")  # class-name text features already encoded
    env = {**os.environ, "OPENOOD_IMMUNO_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "openood_immuno.cli", "features", "--data-root", str(small_root), "--model",
           "ImmunoTiny-ViT", "--pretrained", "none", "--device", "cpu", "--lists",
           ",".join(LISTS), "--batch-size", "8", "--num-workers", "0", *(["--patch-features"] if local else [])]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    entries = sorted((cache / "features").glob("*.pt"))
    assert len(entries) == len(LISTS)                       # one final entry per list
    assert not list((cache / "feature_shards").glob("*"))   # shards removed after assembly
    for name, ds in _datasets(tiny_net, small_root).items():
        assert f"{name}: 25 images" in out.stdout  # ranks 0 and 1: 12 and 13 images
        single = extract_features(tiny_net, make_loader(ds, 64, 0), progress=False, cache=False, local=local)
        key = local_entry_key(dataset_cache_key(tiny_net, ds)) if local else dataset_cache_key(tiny_net, ds)
        got = torch.load(cache / "features" / f"{key}.pt", weights_only=True)
        assert set(got) == {"features", "labels", "image_paths", "list", *(["local"] if local else [])}
        assert torch.equal(got["labels"], single.labels) and got["image_paths"] == single.image_paths
        assert torch.allclose(got["features"], single.features, rtol=0, atol=1e-6)
        if local:
            assert got["local"].dtype == torch.float16 and got["local"].shape[0] == 25
            assert torch.allclose(got["local"].float(), single.local.float(), rtol=0, atol=1e-3)
        # eval reuses it: extract_features reads the entry and runs no backbone pass
        monkeypatch.setenv("OPENOOD_IMMUNO_CACHE", str(cache))
        with monkeypatch.context() as m:
            for encode in ("encode_image", "encode_image_local"):
                m.setattr(tiny_net, encode, lambda x: pytest.fail("cached entry not reused"))
            reused = extract_features(tiny_net, make_loader(ds, 64, 0), progress=False, local=local)
        assert torch.equal(reused.features, got["features"])


def test_an_interrupted_rank_resumes_from_its_shard(tiny_net, minibench, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENOOD_IMMUNO_CACHE", str(tmp_path / "cache"))
    ds = _datasets(tiny_net, minibench)["val_imagenet"]
    key = dataset_cache_key(tiny_net, ds)
    assert shard_bounds(100, 0, 1) == (0, 100) and shard_bounds(5, 2, 3) == (3, 5)
    # a shard left by an interrupted earlier run (world size 1): a marker, not real features
    marker = torch.full((100, tiny_net.embed_dim), 0.5)
    identity = ListIdentity.of(ds)
    torch.save({"features": marker, "labels": torch.arange(100), "image_paths": list(identity.paths),
                "start": 0, "stop": 100, "list": identity.entry_fields()}, shard_path(key, 0, 1))
    monkeypatch.setattr(tiny_net, "encode_image", lambda x: pytest.fail("shard recomputed"))
    entries = extract_lists(tiny_net, {"val_imagenet": ds}, progress=False)
    got = torch.load(entries["val_imagenet"], weights_only=True)
    assert torch.equal(got["features"], marker) and not shard_path(key, 0, 1).exists()
    assert extract_lists(tiny_net, {"val_imagenet": ds}, progress=False) == entries  # cached: no-op


def test_a_shard_of_images_changed_since_is_encoded_again(tiny_net, minibench, tmp_path, monkeypatch, caplog):
    """A shard left by an interrupted run is reused only if its block of the list is unchanged
    (the same git-rule image identities as a cache entry): else it would bring stale features
    into a fresh entry."""
    monkeypatch.setenv("OPENOOD_IMMUNO_CACHE", str(tmp_path / "cache"))
    ds = _datasets(tiny_net, minibench)["val_imagenet"]
    key = dataset_cache_key(tiny_net, ds)
    identity = ListIdentity.of(ds)
    record = identity.entry_fields()
    record["stats"][7, 2] += 1                       # image 7's ctime: replaced since the shard
    torch.save({"features": torch.full((100, tiny_net.embed_dim), 0.5), "labels": torch.arange(100),
                "image_paths": list(identity.paths), "start": 0, "stop": 100, "list": record},
               shard_path(key, 0, 1))
    with caplog.at_level("WARNING", logger="openood_immuno.data.distributed"):
        entries = extract_lists(tiny_net, {"val_imagenet": ds}, progress=False)
    assert "shard 0/1 on disk not used: 1 image(s) changed since it was written" in caplog.text
    got = torch.load(entries["val_imagenet"], weights_only=True)
    single = extract_features(tiny_net, make_loader(ds, 64, 0), progress=False, cache=False)
    assert torch.allclose(got["features"], single.features, rtol=0, atol=1e-6)


def test_unknown_list_name_is_refused_before_any_work(minibench):
    from openood_immuno.cli import main

    with pytest.raises(ValueError, match=r"--lists names \['nope'\]"):
        main(["features", "--data-root", str(minibench), "--lists", "nope", "--pretrained", "none"])
