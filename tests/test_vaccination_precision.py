"""Vaccination at paper scale: bf16 autocast leaves the push-pull loss within 1e-3 of fp32
(checked with CPU autocast; CUDA autocast uses the same ops), and a bf16 training run follows
the fp32 one."""
import pytest
import torch
import torch.nn.functional as F

from openood_immuno.methods.immuno.adapter import RejectionAdapter
from openood_immuno.core.params import ParamError
from openood_immuno.methods.immuno.params import ImmunoDISParams
from openood_immuno.methods.immuno.vaccination import vaccinate, vaccination_losses

C, D, M, N = 50, 128, 2000, 1024


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(C, D, generator=g), dim=1)
    labels = torch.arange(N) % C
    feats = F.normalize(protos[labels] + 0.8 * torch.randn(N, D, generator=g) / D ** 0.5 * 4, dim=1)
    owner = torch.arange(M) % C
    antibodies = F.normalize(protos[owner] + 0.9 * F.normalize(torch.randn(M, D, generator=g), dim=1), dim=1)
    return feats, labels, protos, torch.full((C,), 40.0), antibodies, owner


@pytest.mark.parametrize("margin, hard_k", [(0.3, 8), (0.6, 0), (0.0, 32)])
def test_bf16_autocast_keeps_the_loss_within_1e3(margin, hard_k):
    feats, labels, protos, kappa, antibodies, owner = _problem()
    torch.manual_seed(1)
    adapter = RejectionAdapter(D, 256)
    torch.nn.init.normal_(adapter.f[2].weight, std=0.05)  # not the identity
    with torch.no_grad():
        ref = vaccination_losses(adapter(feats), labels, protos, kappa, antibodies, owner, margin, hard_k)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = vaccination_losses(adapter(feats), labels, protos, kappa, antibodies, owner, margin, hard_k)
    assert all(t.dtype == torch.float32 for t in low)
    assert float(low[0]) != float(ref[0])  # autocast did run the adapter in bf16
    for a, b in zip(ref, low):
        assert abs(float(a) - float(b)) < 1e-3, (float(a), float(b))
    assert abs(float(ref[0] + 5 * ref[1]) - float(low[0] + 5 * low[1])) < 1e-3


def test_bf16_training_follows_fp32():
    feats, labels, protos, kappa, antibodies, owner = _problem(2)
    params = ImmunoDISParams(adapter_hidden=256, epochs=3, lr=1e-3, batch_size=256, weight_decay=1e-4,
                             beta=5.0, hard_k=8, seed=0)
    runs = {p: vaccinate(feats, labels, protos, kappa, antibodies, owner,
                         params.replace({"precision": p}), margin=0.3, progress=False) for p in ("fp32", "bf16")}
    for h32, h16 in zip(runs["fp32"][1], runs["bf16"][1]):
        assert abs(h32["loss"] - h16["loss"]) < 5e-3, (h32, h16)
    assert runs["bf16"][1][-1]["loss"] < runs["bf16"][1][0]["loss"]
    assert all(p.dtype == torch.float32 for p in runs["bf16"][0].parameters())


def test_unknown_precision_is_refused_by_the_params():
    with pytest.raises(ParamError, match=r"precision must be one of \('fp32', 'bf16'\), got 'fp16'"):
        ImmunoDISParams(precision="fp16")
