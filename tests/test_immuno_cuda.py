"""Immuno-VLM on a CUDA device (skipped without one): the synthetic results of the CPU, and the
time of a vaccination at ImageNet scale (1000 classes, 16 shots, d = 512, ~15k antibodies)."""
import time

import pytest
import torch
import torch.nn.functional as F

from openood_immuno import build_postprocessor
from openood_immuno.methods.immuno.params import ImmunoParams
from openood_immuno.methods.immuno.scorer import build_scorer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_gives_the_cpu_results_on_synthetic_geometry(tmp_path):
    from test_immuno_synthetic import evaluate, make_world

    aurocs = {}
    for device in ("cpu", "cuda"):
        net, bank, id_features, test, ood = make_world(device=device)
        path = str(bank.save(tmp_path / f"bank_{device}.json"))
        for name in ("immuno_zeroshot", "immuno"):
            pp = build_postprocessor(name, antibody_bank=path).fit(net, id_features)
            assert pp.scorer.prototypes.device.type == device
            if pp.scorer.adapter is not None:
                assert next(pp.scorer.adapter.parameters()).device.type == device
            aurocs[device, name] = evaluate(pp, test, ood)[1]
    print("AUROC cpu vs cuda", aurocs)
    for name in ("immuno_zeroshot", "immuno"):
        assert aurocs["cuda", name] == pytest.approx(aurocs["cpu", name], abs=2e-3)


def test_vaccination_at_imagenet_scale_on_cuda():
    g = torch.Generator().manual_seed(0)
    classes, shots, dim, per_class = 1000, 16, 512, 15
    text = F.normalize(torch.randn(classes, dim, generator=g), dim=1).cuda()
    y = torch.arange(classes).repeat_interleave(shots)
    x = F.normalize(text.cpu()[y] + 1.5 * torch.randn(len(y), dim, generator=g) / dim ** 0.5, dim=1)
    owner = torch.arange(classes).repeat_interleave(per_class)
    ab = F.normalize(text.cpu()[owner] + 0.7 * torch.randn(len(owner), dim, generator=g) / dim ** 0.5, dim=1)
    val_y = torch.arange(classes).repeat_interleave(5)
    val_x = F.normalize(text.cpu()[val_y] + 1.5 * torch.randn(len(val_y), dim, generator=g) / dim ** 0.5, dim=1)
    params = ImmunoParams(delta_low=-1.0, delta_high=1.0)
    paths = [f"train/{i:06d}.jpg" for i in range(len(y))]
    torch.cuda.synchronize()
    start = time.perf_counter()
    scorer = build_scorer(text, ab.cuda(), owner, params, (x, y, paths), (val_x, val_y),
                          identity="cuda-scale-test", progress=False)
    torch.cuda.synchronize()
    fit_s = time.perf_counter() - start
    info = scorer.vaccination
    start = time.perf_counter()
    for chunk in torch.randn(45000, dim, generator=g).split(256):
        scorer.score(F.normalize(chunk, dim=1))
    torch.cuda.synchronize()
    score_s = time.perf_counter() - start
    print(f"fit (prototypes, filter, 20-epoch vaccination of {len(y)} features against "
          f"{len(owner)} antibodies, 1000 Weibull fits): {fit_s:.1f} s; scoring 45,000 features: "
          f"{score_s:.2f} s; push {info['before']['push']:.4f} -> {info['after']['push']:.4f}")
    assert info["after"]["push"] < info["before"]["push"] and not info["cached"]
    assert not scorer.evt.pooled.all()
