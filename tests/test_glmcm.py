"""GL-MCM: the score on hand-made tensors, the net's local features, the cache rules, the
fp16 storage, postprocess vs cached features, the runner and the CLI by name."""
import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from openood_immuno import build_postprocessor
from openood_immuno.cli import main as cli_main
from openood_immuno.data.benchmarks import BENCHMARKS, BenchmarkLists
from openood_immuno.data.features import FeatureSet, extract_features
from openood_immuno.data.lists import ImglistDataset, make_loader
from openood_immuno.data.local_features import LOCAL_DTYPE, local_bytes_per_image, local_entry_key
from openood_immuno.experiments.runner import FeatureStore, evaluate
from openood_immuno.models.local_tokens import NoPatchTokens
from openood_immuno.scores.glmcm import glmcm_score
from openood_immuno.scores.mcm import mcm_score


def _two_class_max(gap: float) -> float:
    """max softmax of two logits ``gap`` apart: 1 / (1 + exp(-gap))."""
    return 1.0 / (1.0 + math.exp(-gap))


TEXT = torch.tensor([[1.0, 0.0], [0.0, 1.0]])                     # two classes
GLOBAL = torch.tensor([[1.0, 0.0]])                               # cos (1, 0): class 0
LOCAL = torch.tensor([[[0.6, 0.8], [0.28, 0.96], [-0.8, -0.6]]])  # three patches, unit norm


def test_score_is_global_mcm_plus_lambda_times_the_best_patch_and_class():
    pred, conf = glmcm_score(GLOBAL, LOCAL, TEXT, temperature=1.0, lambda_local=0.5)
    # patches: gaps 0.2 (class 1), 0.68 (class 1), 0.2 (class 1): the best is patch 2, class 1,
    # another class than the global argmax: the local term takes the max over patches AND classes
    want = _two_class_max(1.0) + 0.5 * _two_class_max(0.68)
    assert pred.tolist() == [0] and conf.item() == pytest.approx(want, abs=1e-6)
    _, conf_t = glmcm_score(GLOBAL, LOCAL, TEXT, temperature=0.5, lambda_local=1.0)
    assert conf_t.item() == pytest.approx(_two_class_max(2.0) + _two_class_max(1.36), abs=1e-6)


def test_lambda_zero_is_mcm_and_batches_are_independent():
    g = F.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    local = F.normalize(torch.randn(5, 4, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    text = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(2)), dim=-1)
    pred, conf = glmcm_score(g, local, text, 1.0, 0.0)
    mcm_pred, mcm_conf = mcm_score(g, text, 1.0)
    assert torch.equal(pred, mcm_pred) and torch.allclose(conf, mcm_conf)
    _, whole = glmcm_score(g, local, text, 1.0, 0.5)
    parts = torch.cat([glmcm_score(g[i:i + 2], local[i:i + 2], text, 1.0, 0.5)[1] for i in (0, 2, 4)])
    assert torch.allclose(whole, parts)


def test_score_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"global \[B, 2\] and local \[B, P, 2\]"):
        glmcm_score(GLOBAL, LOCAL[0], TEXT, 1.0, 0.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        glmcm_score(GLOBAL, LOCAL, TEXT, temperature=0.0, lambda_local=0.5)


def test_fp16_storage_moves_the_score_by_less_than_1e_3():
    """The cache stores local features as float16 (relative rounding 2**-11 per component)."""
    gen = torch.Generator().manual_seed(3)
    g = F.normalize(torch.randn(16, 512, generator=gen), dim=-1)
    local = F.normalize(torch.randn(16, 196, 512, generator=gen), dim=-1)
    text = F.normalize(torch.randn(100, 512, generator=gen), dim=-1)
    exact = glmcm_score(g, local, text, 1.0, 1.0)[1]
    stored = glmcm_score(g, local.to(LOCAL_DTYPE), text, 1.0, 1.0)[1]
    assert float((exact - stored).abs().max()) < 1e-3
    assert local_bytes_per_image(196, 512) == 196 * 512 * 2 == 200_704


def test_net_gives_the_global_feature_and_the_authors_local_features(tiny_net):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    g, local = tiny_net.encode_image_local(x)
    assert torch.equal(g, tiny_net.encode_image(x))             # the same tower pass, bit for bit
    assert local.shape == (2, 49, 64) and torch.allclose(local.norm(dim=-1), torch.ones(2, 49))
    # the authors' local path: the last block with each token attending only to itself
    vis = tiny_net.clip.visual
    with torch.no_grad():
        z = vis._embeds(x)
        for block in vis.transformer.resblocks[:-1]:
            z = block(z)
        self_only = torch.full((z.shape[1], z.shape[1]), float("-inf")).fill_diagonal_(0.0)
        u = vis.transformer.resblocks[-1](z, attn_mask=self_only)
        want = F.normalize(vis.ln_post(u[:, 1:]) @ vis.proj, dim=-1)
    assert torch.allclose(local, want, atol=1e-5)


def test_a_tower_without_patch_tokens_is_one_clear_line(tiny_net):
    from open_clip.modified_resnet import ModifiedResNet

    net = copy.deepcopy(tiny_net)
    net.clip.visual = ModifiedResNet((1, 1, 1, 1), output_dim=64, heads=2, image_size=64, width=8)
    with pytest.raises(NoPatchTokens, match=r"model 'ImmunoTiny-ViT' gives no local features: its image tower "
                                            r"is a ModifiedResNet, which has no patch tokens; GL-MCM needs an "
                                            r"open_clip ViT CLIP .* --model ViT-B-16"):
        net.encode_image_local(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("command", ["eval", "features"])
def test_a_resnet_clip_is_refused_before_reading_images(minibench, tmp_path, monkeypatch, command):
    """A tiny ResNet CLIP from a local JSON config: eval (with glmcm) and features --patch-features name
    the model and the fix, exit 2 on the console."""
    import json

    from openood_immuno.data import distributed
    from openood_immuno.experiments import runner

    config = json.loads((Path(__file__).resolve().parents[1] / "openood_immuno" / "models" / "model_configs"
                         / "ImmunoTiny-ViT.json").read_text())
    config["vision_cfg"] = {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8}
    path = tmp_path / "TinyRN.json"
    path.write_text(json.dumps(config))
    for module in (runner, distributed):
        monkeypatch.setattr(module, "extract_features", lambda *a, **k: pytest.fail("an image was read"))
    argv = {"eval": ["eval", "--postprocessors", "mcm,glmcm", "--no-progress", "--output-dir", str(tmp_path / "out")],
            "features": ["features", "--patch-features", "--lists", "test_imagenet"]}[command]
    with pytest.raises(NoPatchTokens, match=r"model '.*TinyRN.json' gives no local features: its image tower "
                                            r"is a ModifiedResNet"):
        cli_main([*argv, "--data-root", str(minibench), "--model", str(path), "--pretrained", "none",
                  "--device", "cpu", "--num-workers", "0"])


def _loader(net, minibench, n, folder):
    """The first ``n`` images of the minibench's ImageNet val list."""
    spec = BENCHMARKS["imagenet"].id["val"]
    lines = (minibench / spec.imglist).read_text().splitlines(keepends=True)[:n]
    (folder / f"val_{n}.txt").write_text("".join(lines))
    spec = replace(spec, imglist=str(folder / f"val_{n}.txt"))
    return make_loader(ImglistDataset(str(minibench), spec, net.preprocess, 1000), 16, 0)


def test_cache_keeps_local_entries_apart_and_their_global_rows_equal(tiny_net, minibench, caplog, tmp_path):
    plain = extract_features(tiny_net, _loader(tiny_net, minibench, 20, tmp_path), progress=False)
    assert plain.local is None
    with caplog.at_level("INFO", logger="openood_immuno.data.features"):
        local = extract_features(tiny_net, _loader(tiny_net, minibench, 20, tmp_path), progress=False, local=True)
    assert "from cache" not in caplog.text      # a global-only entry never serves local features
    assert torch.equal(local.features, plain.features) and local.local.dtype == LOCAL_DTYPE
    assert local.local.shape == (20, 49, 64)
    caplog.clear()
    with caplog.at_level("INFO", logger="openood_immuno.data.features"):
        again = extract_features(tiny_net, _loader(tiny_net, minibench, 20, tmp_path), progress=False, local=True)
    assert "20 images from cache" in caplog.text and torch.equal(again.local, local.local)


def test_a_local_entry_without_local_features_is_rebuilt(tiny_net, minibench, caplog, tmp_path):
    from openood_immuno.core.cache import cache_dir
    from openood_immuno.data.features import dataset_cache_key

    loader = _loader(tiny_net, minibench, 12, tmp_path)
    first = extract_features(tiny_net, loader, progress=False, local=True)
    path = cache_dir("features") / f"{local_entry_key(dataset_cache_key(tiny_net, loader.dataset))}.pt"
    entry = torch.load(path, weights_only=False)
    del entry["local"]
    torch.save(entry, path)
    with caplog.at_level("WARNING", logger="openood_immuno.data.features"):
        again = extract_features(tiny_net, loader, progress=False, local=True)
    assert "it holds no local features; extracting them again" in caplog.text
    assert torch.equal(again.local, first.local)


def test_postprocess_equals_cached_features_and_inference(tiny_net, minibench, tmp_path):
    pp = build_postprocessor("glmcm").fit(tiny_net, {})
    loader = _loader(tiny_net, minibench, 24, tmp_path)
    fs = extract_features(tiny_net, loader, progress=False, local=True)
    _, cached_conf, _ = pp.score_feature_set(fs, batch_size=10)
    batches = [pp.postprocess(tiny_net, batch["data"]) for batch in loader]
    online = torch.cat([conf for _, conf in batches]).numpy()
    assert online == pytest.approx(cached_conf, abs=1e-6)
    assert pp.inference(tiny_net, loader, progress=False)[1] == pytest.approx(cached_conf, abs=1e-6)


def test_global_only_features_are_refused_with_the_fix(tiny_net):
    pp = build_postprocessor("glmcm").fit(tiny_net, {})
    fs = FeatureSet("x", F.normalize(torch.randn(3, 64), dim=-1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"needs local \(per-patch\) features but 'x' holds global ones only"):
        pp.score_feature_set(fs)
    with pytest.raises(ValueError, match=r"call score_features\(features, local=...\)"):
        pp.score_features(fs.features)


def test_glmcm_runs_by_name_in_the_builtin_runner(tiny_net, minibench):
    """10-60 s on 2 shared cores (load-dependent): one pass over the minibench's 1,650 test images
    with local features (their own cache entries; the CLI test below reuses them), then APS over
    the 12 sweep combinations on the 200 ID/OOD val images."""
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False, local=True)
    result = evaluate(build_postprocessor("glmcm"), store)
    assert len(result.rows) == 7 and result.run_status.state == "random-weights"
    assert store.get("test_imagenet", None).local.shape[1:] == (49, 64)
    aps = evaluate(build_postprocessor("glmcm", APS_mode=True), store)   # OpenOOD's APS on ID/OOD val
    assert aps.hyperparams["lambda_local"] in (0.25, 0.5, 1.0, 2.0) and aps.hyperparams["T"] in (0.5, 1.0, 2.0)


def test_eval_cli_by_name(minibench, tmp_path, isolated_cache, capsys):
    code = cli_main(["eval", "--data-root", str(minibench), "--postprocessors", "glmcm,mcm",
                     "--model", "ImmunoTiny-ViT", "--pretrained", "none", "--device", "cpu",
                     "--num-workers", "0", "--no-progress", "--output-dir", str(tmp_path / "out")])
    assert code == 0
    assert "== glmcm" in capsys.readouterr().out
