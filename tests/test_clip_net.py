import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T

from openood_immuno import build_clip_net
from openood_immuno.data.classnames import imagenet_classes, resolve_class_names


def test_imagenet_classes_shipped():
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0] == ("n01440764", "tench")
    assert [w for w, _ in classes] == sorted(w for w, _ in classes)


def test_openood_net_contract(tiny_net):
    x = torch.randn(2, 3, 224, 224)
    logits = tiny_net(x)
    logits2, feats = tiny_net(x, return_feature=True)
    assert logits.shape == (2, 1000) and torch.allclose(logits, logits2)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(logits, tiny_net.logit_scale * feats @ tiny_net.class_text_features.T, atol=1e-5)
    assert isinstance(tiny_net.preprocess, T.Compose)
    assert isinstance(tiny_net.preprocess.transforms[-1], T.Normalize)


def test_template_ensemble_is_normalised_mean_of_normalised_prompts(tiny_net):
    templates = ["a photo of a {}.", "a drawing of a {}."]
    ens = tiny_net.encode_text(["cat", "dog"], templates)
    for row, name in zip(ens, ["cat", "dog"]):
        singles = torch.cat([tiny_net.encode_text([t.format(name)], ()) for t in templates])
        assert torch.allclose(row, F.normalize(singles.mean(0), dim=-1), atol=1e-5)


def test_text_features_cached_on_disk(tiny_net, isolated_cache):
    tiny_net.encode_text(["a unique caching probe"], ())
    files = list((isolated_cache / "text").glob("*.pt"))
    assert files and not list((isolated_cache / "text").glob(".tmp-*"))


def test_random_init_warns_loudly():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        build_clip_net("ImmunoTiny-ViT", "none", ["cat", "dog"])


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*checkpoint"):
        build_clip_net("ImmunoTiny-ViT", str(tmp_path / "missing.pt"), ["cat"])


def test_corrupt_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="broken.pt"):
        build_clip_net("ImmunoTiny-ViT", str(bad), ["cat"])


def test_unknown_model_and_unknown_tag():
    with pytest.raises(ValueError, match="unknown CLIP model"):
        build_clip_net("ViT-Nope-99", "openai", ["cat"])
    with pytest.raises(ValueError, match="no pretrained weights 'nonsense'"):
        build_clip_net("ViT-B-16", "nonsense", ["cat"])


def test_unavailable_download_fails_with_instructions(monkeypatch):
    import open_clip

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", no_network)
    with pytest.raises(RuntimeError, match="Download them once|--pretrained"):
        build_clip_net("ViT-B-16", "openai", ["cat"])


def test_class_names_validation():
    with pytest.raises(ValueError, match="unknown ID dataset"):
        resolve_class_names("cifar1000")
    with pytest.raises(ValueError, match="non-empty"):
        resolve_class_names([])


def test_checkpoint_path_roundtrip(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = build_clip_net("ImmunoTiny-ViT", "none", ["cat", "dog"], seed=3)
    ckpt = tmp_path / "tiny.pt"
    torch.save(net.clip.state_dict(), ckpt)
    loaded = build_clip_net("ImmunoTiny-ViT", str(ckpt), ["cat", "dog"])
    assert torch.allclose(loaded.class_text_features, net.class_text_features, atol=1e-5)
    assert loaded.identity.startswith("ImmunoTiny-ViT|file:")


def test_a_replaced_checkpoint_of_the_same_size_and_times_is_another_net(tmp_path):
    """Before: a checkpoint was identified by path, size and mtime, so ``cp other.pt model.pt;
    touch -r backup model.pt`` reused the old features and rewrote the old run's folder. Now by
    content (BLAKE3): the net identity (feature and text cache keys) and the run key change."""
    import os
    import shutil

    from openood_immuno.experiments.results import RunSpec, file_fingerprint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nets = [build_clip_net("ImmunoTiny-ViT", "none", ["cat", "dog"], seed=s) for s in (3, 4)]
    ckpt, other = tmp_path / "model.pt", tmp_path / "other.pt"
    torch.save(nets[0].clip.state_dict(), ckpt)
    torch.save(nets[1].clip.state_dict(), other)
    assert ckpt.stat().st_size == other.stat().st_size
    before = build_clip_net("ImmunoTiny-ViT", str(ckpt), ["cat", "dog"])
    spec = lambda net: RunSpec("imagenet", "ImmunoTiny-ViT", str(ckpt), net.identity, "/d", {}, "mcm",  # noqa: E731
                               {}, "openood")
    key, fingerprint = spec(before).key(), file_fingerprint(str(ckpt))
    st = ckpt.stat()
    shutil.copyfile(other, ckpt)
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (ckpt.stat().st_size, ckpt.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    after = build_clip_net("ImmunoTiny-ViT", str(ckpt), ["cat", "dog"])
    assert after.identity != before.identity and after.identity.startswith("ImmunoTiny-ViT|file:blake3:")
    assert file_fingerprint(str(ckpt))["digest"] != fingerprint["digest"]
    assert spec(after).key() != key
    assert not torch.allclose(after.class_text_features, before.class_text_features)
    os.utime(ckpt)                                           # touched, same bytes: the same net
    assert build_clip_net("ImmunoTiny-ViT", str(ckpt), ["cat", "dog"]).identity == after.identity
