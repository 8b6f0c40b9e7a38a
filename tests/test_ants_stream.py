"""ANTS over a stream on ImmunoTiny-ViT: deterministic with the scripted MLLM, banks that really
fill, modes and lambda as defined, exact NegLabel fallback, failures that never crash."""
import logging
import warnings

import pytest
import torch
from PIL import Image

from openood_immuno import build_postprocessor
from openood_immuno.methods.ants import adaptive_lambda, fuse
from openood_immuno.data.features import FeatureSet
from openood_immuno.scores.ants import balanced_bank_score, bank_score
from openood_immuno.methods.ants import images_from_tensor

SMALL = dict(n_neg_labels=120, corpus_limit=600, n_groups=12, group_size=10, init_threshold=0.9,
             mine_min_cache=8, ens_max_updates=3, vsnl_start_batch=2, vsnl_interval=2, vsnl_top_k=3)
N_BATCHES, BATCH = 8, 16


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """128 unit features with one real image file each (colours vary), in stream order."""
    folder = tmp_path_factory.mktemp("stream_images")
    paths = []
    for i in range(N_BATCHES * BATCH):
        path = folder / f"img{i:03d}.png"
        Image.new("RGB", (24, 24), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(path)
        paths.append(str(path))
    feats = torch.nn.functional.normalize(torch.randn(len(paths), 64, generator=torch.Generator().manual_seed(1)), dim=-1)
    return feats, paths


def make(name="ants", net=None, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ANTS is using the 'scripted' MLLM")
        pp = build_postprocessor(name, **{"mllm": "scripted", **SMALL, **kw})
        return pp.fit(net, {}) if net is not None else pp


def neglabel_pp(net):
    return build_postprocessor("neglabel", n_neg_labels=120, corpus_limit=600, n_groups=12).fit(net, {})


def run(pp, stream):
    feats, paths = stream
    out = [pp.score_features(feats[i:i + BATCH], paths[i:i + BATCH])[1] for i in range(0, len(paths), BATCH)]
    return torch.cat(out)


def test_stream_is_deterministic_and_both_banks_fill(tiny_net, stream):
    pp = make(net=tiny_net)
    first = run(pp, stream)
    status = pp.status()
    assert status["ens_updates"] >= 1 and status["ens_bank"] > 0 and status["vsnl_bank"] > 0
    assert status["threshold"] != 0.9 and status["mllm_cost"]["requests"] > 0 and not status["degraded"]
    assert status["lambda"] is not None
    pp.reset()
    assert pp.status()["ens_bank"] == 0 and pp.status()["vsnl_bank"] == 0 and pp.status()["threshold"] == 0.9
    assert torch.equal(run(pp, stream), first)
    assert not torch.equal(first, neglabel_pp(tiny_net).score_features(stream[0])[1])


def test_each_mode_is_its_definition_batch_by_batch(tiny_net, stream):
    feats, paths = stream
    pps = {n: make(n, tiny_net) for n in ("ants", "ants_ens", "ants_vsnl")}
    assert [p.args["mode"] for p in pps.values()] == ["ada", "far_only", "near_only"]
    sum_e = sum_v = 0.0
    for i in range(0, len(paths), BATCH):
        f, p = feats[i:i + BATCH], paths[i:i + BATCH]
        confs = {n: pp.score_features(f, p)[1] for n, pp in pps.items()}
        on = pps["ants"].scorer
        base = on.base.score(f)[1]
        s_ens = bank_score(f, on.base.id_text, on.ens.features, base, 100.0, 10)
        s_vsnl = bank_score(f, on.base.id_text, on.vsnl.features, base, 100.0, 10)
        # the scorer's one fused matmul equals the separate bank scores to float rounding (1e-6)
        assert torch.allclose(confs["ants_ens"], s_ens, rtol=0, atol=1e-6)
        assert torch.allclose(confs["ants_vsnl"], s_vsnl, rtol=0, atol=1e-6)
        sum_e += float(balanced_bank_score(f, on.base.id_text, on.ens.features, base, 100.0, 1).double().sum())
        sum_v += float(balanced_bank_score(f, on.base.id_text, on.vsnl.features, base, 100.0, 10).double().sum())
        n_seen = i + BATCH
        lam = adaptive_lambda(sum_e / n_seen, sum_v / n_seen)   # code: means over every sample so far
        assert on.last_lambda == pytest.approx(lam, abs=1e-6)
        if len(on.ens) or len(on.vsnl):
            assert torch.allclose(confs["ants"], fuse(s_ens, s_vsnl, lam), atol=1e-6)
        else:
            assert torch.equal(confs["ants"], base)
    assert len(on.ens) > 0 and len(on.vsnl) > 0 and 0 < on.last_lambda < 1


def test_paper_reading_of_lambda_uses_mined_negatives(tiny_net, stream):
    feats, paths = stream
    pp = make(net=tiny_net, lambda_means="mined", lambda_balanced=False)
    on = pp.scorer
    sums, count = [0.0, 0.0], 0
    for i in range(0, len(paths), BATCH):
        f, p = feats[i:i + BATCH], paths[i:i + BATCH]
        threshold = on.miner.threshold                  # mining uses the threshold before the update
        pp.score_features(f, p)
        base = on.base.score(f)[1]
        mined = base < threshold
        for k, bank in enumerate((on.ens.features, on.vsnl.features)):
            sums[k] += float(bank_score(f, on.base.id_text, bank, base, 100.0, 10)[mined].double().sum())
        count += int(mined.sum())
        expected = 0.5 if count == 0 else adaptive_lambda(sums[0] / count, sums[1] / count)
        assert on.last_lambda == pytest.approx(expected, abs=1e-6)
    assert count > 0 and len(on.ens) > 0 and len(on.vsnl) > 0


def test_without_mllm_every_mode_is_exactly_neglabel(tiny_net, stream):
    neglabel = neglabel_pp(tiny_net)
    expected = torch.cat([neglabel.score_features(stream[0][i:i + BATCH])[1]
                          for i in range(0, len(stream[1]), BATCH)])
    for name in ("ants", "ants_ens", "ants_vsnl"):
        pp = make(name, tiny_net, mllm="none")
        assert torch.equal(run(pp, stream), expected)
        assert pp.status()["degraded"] is False


def test_unloadable_mllm_degrades_loudly_or_fails_when_strict(tiny_net, stream, caplog):
    with caplog.at_level(logging.ERROR), pytest.warns(UserWarning, match="DEGRADED"):
        pp = make(net=tiny_net, mllm="hf:/nonexistent/vlm")
    assert "DEGRADED" in caplog.text and pp.status()["degraded"] is True
    assert torch.equal(run(pp, stream), run(make(net=tiny_net, mllm="none"), stream))
    with pytest.raises(RuntimeError, match="could not load"):
        make(net=tiny_net, mllm="hf:/nonexistent/vlm", mllm_strict=True)


def test_backend_failing_mid_stream_never_crashes(tiny_net, stream, caplog):
    pp = make(net=tiny_net)

    def broken(prompt, image):
        raise TimeoutError("MLLM timed out")

    pp.scorer.backend.script = broken
    with caplog.at_level(logging.WARNING):
        conf = run(pp, stream)
    assert "MLLM timed out" in caplog.text and pp.status()["mllm_cost"]["failures"] > 0
    assert torch.equal(conf, run(make(net=tiny_net, mllm="none"), stream))


def test_garbage_answers_add_nothing(tiny_net, stream):
    pp = make(net=tiny_net)
    pp.scorer.backend.script = lambda prompt, image: "!!! 123 ..."
    run(pp, stream)
    assert pp.status()["ens_bank"] == 0 and pp.status()["vsnl_bank"] == 0
    assert pp.status()["ens_updates"] >= 1


def test_reset_each_list_defines_the_stream(tiny_net, stream):
    fs = FeatureSet("s", stream[0], torch.zeros(len(stream[1]), dtype=torch.long), stream[1])
    fresh = make(net=tiny_net)
    a, b = fresh.score_feature_set(fs, BATCH)[1], fresh.score_feature_set(fs, BATCH)[1]
    assert (a == b).all()
    carry = make(net=tiny_net, reset_each_list=False)
    c, d = carry.score_feature_set(fs, BATCH)[1], carry.score_feature_set(fs, BATCH)[1]
    assert (c == a).all() and not (d == c).all()


def test_postprocess_recovers_images_for_the_mllm(tiny_net):
    img = Image.new("RGB", (300, 260), (200, 40, 40))
    data = torch.stack([tiny_net.preprocess(img)] * 2)
    back = images_from_tensor(data, tiny_net.preprocess)
    assert len(back) == 2 and back[0].size == (224, 224)
    assert abs(back[0].getpixel((100, 100))[0] - 200) <= 2
    pp = make(net=tiny_net, mine_min_cache=0, init_threshold=1.0)
    seen = []
    pp.scorer.backend.script = lambda prompt, image: seen.append(image.size) or "a red square"
    pred, conf = pp.postprocess(tiny_net, data)
    assert conf.shape == (2,) and seen == [(224, 224), (224, 224)]


def test_unreadable_mined_images_are_skipped_with_one_warning(tiny_net, stream, caplog):
    feats, paths = stream
    pp = make(net=tiny_net)
    with caplog.at_level(logging.WARNING):
        run(pp, (feats, ["/nonexistent/img.png"] * len(paths)))
    warned = [r for r in caplog.records if "could not be read" in r.getMessage()]
    assert warned and len(warned) == pp.status()["ens_updates"]
    assert pp.status()["ens_bank"] == 0 and pp.status()["vsnl_bank"] > 0


def test_invalid_settings_name_the_fix(tiny_net):
    with pytest.raises(RuntimeError, match="fit"):
        make().score_features(torch.zeros(1, 64))
    with pytest.raises(ValueError, match="mode"):
        make(net=tiny_net, mode="both")
    with pytest.raises(ValueError, match="vsnl_count_over"):
        make(net=tiny_net, vsnl_count_over="some")
    with pytest.raises(ValueError, match="unknown parameter"):
        make(net=tiny_net, lamda=0.5)


def test_tiny_transformers_vlm_drives_the_stream(tiny_net, stream, tmp_path):
    from test_ants_mllm import build_tiny_llava

    folder = build_tiny_llava(tmp_path / "vlm")
    pp = make(net=tiny_net, mllm=f"hf:{folder}", mllm_device="cpu", ens_max_new_tokens=5,
              vsnl_max_new_tokens=8, ens_max_updates=1)
    conf = run(pp, stream)
    status = pp.status()
    assert status["mllm"] == f"hf:{folder}" and status["mllm_cost"]["calls"] > 0
    assert status["mllm_cost"]["tokens"] > 0 and status["ens_bank"] > 0
    assert all(isinstance(t, str) and t for t in pp.scorer.ens.texts)
    assert conf.shape == (N_BATCHES * BATCH,) and torch.isfinite(conf).all()
