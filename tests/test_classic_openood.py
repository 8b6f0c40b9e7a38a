"""OpenOOD's own classic postprocessor classes run unchanged on the CLIP net, and our builtin scores
(cached features) equal theirs per sample.

Needs a real OpenOOD (skipped without it) and OpenOOD's configs (``OPENOOD_SRC``, the checkout; the
yml files are not installed with the package). On a CPU, ``Tensor.cuda`` / ``Module.cuda`` are made
no-ops for the test (OpenOOD's postprocessors call them unconditionally; nothing else is changed).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openood.postprocessors")
faiss = pytest.importorskip("faiss")

OPENOOD_SRC = Path(os.environ.get("OPENOOD_SRC", "/work/openood-src"))
CONFIGS = OPENOOD_SRC / "configs" / "postprocessors"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# OpenOOD's name -> overrides of its yml for the 64-d test net (ViM's 256 needs a wider embedding)
OVERRIDES = {"vim": {"dim": 32}}
NAMES = ["msp", "ebo", "mls", "gen", "gradnorm", "react", "ash", "scale", "dice", "knn", "vim", "mds",
         "rmds", "klm", "she", "fdbd", "nci"]


@pytest.fixture(scope="module")
def setting():
    """A 10-class tiny CLIP net, synthetic images, their loaders (OpenOOD's batch dicts) and features."""
    if not CONFIGS.is_dir():
        pytest.skip(f"OpenOOD's configs not found at {CONFIGS}: set OPENOOD_SRC to the OpenOOD checkout")
    from openood_immuno import build_clip_net
    from openood_immuno.data.features import FeatureSet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = build_clip_net("ImmunoTiny-ViT", "none", CLASSES, seed=3)
    # the image tower of a random tiny ViT maps noise images to nearly collinear embeddings
    # (covariance condition number ~1e12: Mahalanobis scores are float noise in any implementation);
    # a fixed random projection of the pixels gives well-conditioned embeddings. Everything after
    # clip.encode_image (normalisation, the head, forward, forward_threshold) is the CLIPNet's own.
    projection = torch.randn(3 * 224 * 224, net.embed_dim, generator=torch.Generator().manual_seed(1)) / 400
    net.clip.encode_image = lambda x: x.flatten(1) @ projection
    g = torch.Generator().manual_seed(0)
    images = {"train": torch.randn(120, 3, 224, 224, generator=g), "val": torch.randn(40, 3, 224, 224, generator=g),
              "test": torch.randn(24, 3, 224, 224, generator=g)}
    with torch.no_grad():
        train_pred = net(images["train"]).argmax(1)
    labels = {"train": train_pred.clone(), "val": torch.arange(40) % 10, "test": torch.arange(24) % 10}
    # SHE/MDS need every class in ID train: predicted ones are "correct" (SHE); unseen classes get
    # one image each, labelled so
    missing = sorted(set(range(10)) - set(train_pred.tolist()))
    labels["train"][:len(missing)] = torch.tensor(missing, dtype=torch.long)

    def loader(split):
        items = [{"data": x, "label": int(y)} for x, y in zip(images[split], labels[split])]
        return torch.utils.data.DataLoader(items, batch_size=16, shuffle=False)

    loaders = {s: loader(s) for s in images}
    feats = {s: FeatureSet(s, net.encode_image(images[s]), labels[s], [""] * len(labels[s])) for s in images}
    return net, images, loaders, feats, bool(missing)


@pytest.fixture
def cpu_cuda(monkeypatch):
    if not torch.cuda.is_available():
        monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
        monkeypatch.setattr(torch.nn.Module, "cuda", lambda self, *a, **k: self)


def _openood(name: str):
    from openood.evaluation_api.postprocessor import postprocessors
    from openood.utils.config import Config, merge_configs

    config = merge_configs(Config(str(CONFIGS / f"{name}.yml")), Config(**{"dataset": {"name": "cifar10"}}))
    for key, value in OVERRIDES.get(name, {}).items():
        config.postprocessor.postprocessor_args[key] = value
    return postprocessors[name](config)


def _wrapped(net, name):
    """The net as ``Evaluator(net, postprocessor_name=name)`` wraps it."""
    from openood.networks.ash_net import ASHNet
    from openood.networks.react_net import ReactNet
    from openood.networks.scale_net import ScaleNet

    return {"react": ReactNet, "ash": ASHNet, "scale": ScaleNet}.get(name, lambda n: n)(net)


@pytest.mark.parametrize("name", NAMES)
def test_openood_postprocessor_runs_on_the_clip_net_and_equals_ours(setting, cpu_cuda, name):
    from openood_immuno import build_postprocessor

    net, images, loaders, feats, _ = setting
    theirs = _openood(name)
    wrapped = _wrapped(net, name)
    theirs.setup(wrapped, {s: loaders[s] for s in ("train", "val")}, {})
    pred_o, conf_o = theirs.postprocess(wrapped, images["test"].clone())

    ours = build_postprocessor(name, "cifar10", **OVERRIDES.get(name, {}))
    ours.fit(net, {s: feats[s] for s in ("train", "val")})
    pred, conf = ours.score_features(feats["test"].features)
    conf_o = torch.as_tensor(conf_o).double().cpu()
    assert torch.equal(pred.cpu(), torch.as_tensor(pred_o).cpu()), name
    assert torch.allclose(conf.double().cpu(), conf_o, rtol=1e-4, atol=1e-4 * float(conf_o.abs().max())), (
        name, conf[:4], conf_o[:4])


def test_openood_odin_runs_on_the_clip_net(setting, cpu_cuda):
    """ODIN perturbs the input along the gradient: the net's forward is differentiable."""
    net, images, *_ = setting
    odin = _openood("odin")
    pred, conf = odin.postprocess(net, images["test"][:4].clone())
    assert pred.shape == (4,) and torch.isfinite(conf).all()


@pytest.mark.parametrize("name", ["react", "dice"])
def test_evaluator_by_name_runs_openoods_own_and_matches_builtin_runner(tiny_net, minibench, tmp_path, cpu_cuda,
                                                                        name):
    """``Evaluator(net, postprocessor_name=NAME)`` runs OpenOOD's own class (react: on its ReactNet
    wrapper, with its parameter search) on the CLIP net; ``openood-immuno eval`` gives its table."""
    import openood_immuno
    from openood.evaluation_api import Evaluator

    from openood_immuno import build_postprocessor
    from openood_immuno.data.benchmarks import BenchmarkLists
    from openood_immuno.experiments.runner import FeatureStore, evaluate

    if not CONFIGS.is_dir():
        pytest.skip(f"OpenOOD's configs not found at {CONFIGS}: set OPENOOD_SRC to the OpenOOD checkout")
    openood_immuno.register()
    evaluator = Evaluator(tiny_net, id_name="imagenet", data_root=str(minibench),
                          config_root=str(OPENOOD_SRC / "configs"), preprocessor=tiny_net.preprocess,
                          postprocessor_name=name, batch_size=64, num_workers=0)
    assert type(evaluator.postprocessor).__module__.startswith("openood.postprocessors")
    frame = evaluator.eval_ood(progress=False)
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    ours = evaluate(build_postprocessor(name), store)
    for row in frame.index:   # the Evaluator's ACC is the net's own (our ACC_zeroshot, column 5)
        theirs = list(frame.loc[row])
        assert theirs[:4] == pytest.approx(ours.rows[row][:4], abs=1e-4), row
        assert theirs[4] == pytest.approx(ours.rows[row][5], abs=1e-4), row
