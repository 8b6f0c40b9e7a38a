"""Immuno-VLM formulas against direct computations on fixed tensors."""
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from openood_immuno.methods.immuno.adapter import RejectionAdapter
from openood_immuno.methods.immuno.vaccination import (adapter_key, auto_margin, few_shot_indices, load_or_vaccinate,
                                               tensor_digest, vaccination_losses)
from openood_immuno.methods.immuno.antigen import class_means, estimate_kappa, geodesic_prototypes, vmf_kappa
from openood_immuno.methods.immuno.evt import EVTCalibrator, fit_weibull, lower_tail
from openood_immuno.methods.immuno.filtration import FilterReport, band_pass_mask
from openood_immuno.methods.immuno.antibody_sources import isotropic_antibodies
from openood_immuno.methods.immuno.params import ImmunoParams
from openood_immuno.scores.immuno import dis_score, nonself_score, self_score


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def angle(a, b):
    return math.acos(max(-1.0, min(1.0, float(a @ b))))


def test_self_nonself_and_dis_match_loops():
    z, mu, ab = unit(6, 8, seed=1), unit(4, 8, seed=2), unit(5, 8, seed=3)
    for lam in (0.0, 0.5, 1.7):
        pred, dis = dis_score(z, mu, ab, lam)
        for i in range(6):
            cos_mu = [float(z[i] @ mu[c]) for c in range(4)]
            cos_ab = [float(z[i] @ ab[a]) for a in range(5)]
            assert pred[i].item() == int(np.argmax(cos_mu))
            assert dis[i].item() == pytest.approx(max(cos_mu) - lam * max(cos_ab), abs=1e-6)
            assert self_score(z, mu)[1][i].item() == pytest.approx(max(cos_mu), abs=1e-6)
            assert nonself_score(z, ab)[i].item() == pytest.approx(max(cos_ab), abs=1e-6)


def test_scores_reject_bad_input():
    with pytest.raises(ValueError, match="dimension mismatch"):
        dis_score(unit(2, 8), unit(3, 4), unit(3, 8))
    with pytest.raises(ValueError, match="no antibodies.*delta_low"):
        nonself_score(unit(2, 8), torch.zeros(0, 8))
    with pytest.raises(ValueError, match="lambda"):
        dis_score(unit(2, 8), unit(3, 8), unit(3, 8), -1.0)


def test_geodesic_prototype_within_theta_and_on_the_great_circle():
    t, m = unit(50, 16, seed=4), unit(50, 16, seed=5)
    counts = torch.ones(50, dtype=torch.long)
    for theta in (0.0, 0.2, 0.7, 1.2, math.pi):
        mu = geodesic_prototypes(t, m, counts, theta)
        assert torch.allclose(mu.norm(dim=1), torch.ones(50), atol=1e-5)
        for c in range(50):
            phi = angle(t[c], m[c])
            # within theta of the text embedding, at exactly min(phi, theta)
            assert angle(t[c], mu[c]) == pytest.approx(min(phi, theta), abs=1e-3)
            # on the great circle through t and m, on the arc between them
            basis = torch.linalg.qr(torch.stack([t[c], m[c]], 1))[0]
            assert (mu[c] - basis @ (basis.T @ mu[c])).norm() < 1e-4
            assert angle(t[c], mu[c]) + angle(mu[c], m[c]) == pytest.approx(phi, abs=1e-3)
    # no images of a class -> its text embedding
    mu = geodesic_prototypes(t, m, torch.zeros(50, dtype=torch.long), 0.5)
    assert torch.allclose(mu, t, atol=1e-6)
    with pytest.raises(ValueError, match="theta"):
        geodesic_prototypes(t, m, counts, -0.1)


def test_class_means_and_kappa_formula():
    x = unit(10, 6, seed=6)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    means, counts = class_means(x, y, 4)
    for c in range(3):
        direct = F.normalize(x[y == c].sum(0), dim=0)
        assert torch.allclose(means[c], direct, atol=1e-6)
    assert counts.tolist() == [4, 2, 4, 0] and means[3].abs().sum() == 0
    with pytest.raises(ValueError, match="labels must lie"):
        class_means(x, torch.full((10,), 7), 4)
    r = torch.tensor([0.3, 0.9])
    assert vmf_kappa(r, 6).tolist() == pytest.approx([0.3 * (6 - 0.09) / 0.91, 0.9 * (6 - 0.81) / 0.19], rel=1e-5)


def test_kappa_estimate_recovers_known_concentration_with_pooled_fallback():
    from scipy.stats import vonmises_fisher

    d, kappas = 16, [20.0, 80.0]
    mus = unit(2, d, seed=7)
    xs = [torch.tensor(vonmises_fisher(mus[c].double().numpy(), k).rvs(3000, random_state=c),
                       dtype=torch.float32) for c, k in enumerate(kappas)]
    x = torch.cat(xs + [xs[0][:2]])
    y = torch.tensor([0] * 3000 + [1] * 3000 + [2, 2])
    mu = torch.cat([mus, unit(1, d, seed=8)])
    kappa, n_pooled = estimate_kappa(x, y, mu, min_samples=5)
    assert kappa[0].item() == pytest.approx(20.0, rel=0.1)
    assert kappa[1].item() == pytest.approx(80.0, rel=0.1)
    pooled = vmf_kappa((x * mu[y]).sum(1).mean(), d)
    assert n_pooled == 1 and kappa[2].item() == pytest.approx(pooled.item(), rel=1e-5)


def test_band_pass_keeps_exactly_the_band():
    mu = unit(2, 32, seed=9)
    targets = [0.2, 0.5, 0.549, 0.551, 0.7, 0.919, 0.921, 0.99]
    rows, owner = [], []
    for c in range(2):
        for k, cos in enumerate(targets):
            u = unit(32, seed=100 + 10 * c + k)
            u = F.normalize(u - (u @ mu[c]) * mu[c], dim=0)
            rows.append(cos * mu[c] + math.sqrt(1 - cos ** 2) * u)
            owner.append(c)
    ab, owner = torch.stack(rows), torch.tensor(owner)
    keep, cos = band_pass_mask(ab, owner, mu, 0.55, 0.92)
    direct = [0.55 <= float(ab[i] @ mu[owner[i]]) <= 0.92 for i in range(len(rows))]
    assert keep.tolist() == direct == [0.55 <= t <= 0.92 for t in targets] * 2
    report = FilterReport.from_mask(owner, keep, 3, 0.55, 0.92)
    assert report.before.tolist() == [8, 8, 0] and report.after.tolist() == [3, 3, 0]
    assert "6 of 16 antibodies survive" in report.summary() and "1 of 3 classes keep none" in report.summary()
    with pytest.raises(ValueError, match="delta_low <= delta_high"):
        band_pass_mask(ab, owner, mu, 0.9, 0.5)


def test_vaccination_losses_match_direct_computation():
    g, mu, ab = unit(5, 8, seed=10), unit(3, 8, seed=11), unit(7, 8, seed=12)
    y = torch.tensor([0, 1, 2, 1, 0])
    owner = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    kappa = torch.tensor([10.0, 20.0, 30.0])
    margin, hard_k = 0.1, 3
    pull, push = vaccination_losses(g, y, mu, kappa, ab, owner, margin, hard_k)
    w = kappa / kappa.mean()
    pulls, pushes = [], []
    for i in range(5):
        pulls.append(float(w[y[i]]) * (1 - float(g[i] @ mu[y[i]])))
        h = [max(0.0, float(g[i] @ ab[a]) - margin) for a in range(7)]
        own = [h[a] for a in range(7) if owner[a] == y[i]]
        pushes.append(sum(own) / len(own) + sum(sorted(h)[-hard_k:]) / hard_k)
    assert pull.item() == pytest.approx(np.mean(pulls), abs=1e-6)
    assert push.item() == pytest.approx(np.mean(pushes), abs=1e-6)


def test_adapter_is_identity_at_init_and_about_half_a_million_parameters():
    adapter = RejectionAdapter(512, 512)
    assert sum(p.numel() for p in adapter.parameters()) == 525_312
    z = unit(4, 512, seed=13)
    assert torch.allclose(adapter(z), z, atol=1e-6)


def test_few_shot_selection_is_per_class_capped_and_order_independent():
    labels = torch.tensor([c for c in range(5) for _ in range(10)])
    paths = [f"img/{c}_{i}.jpg" for c in range(5) for i in range(10)]
    idx = few_shot_indices(labels, paths, shots=3, cap=0, seed=0)
    assert torch.bincount(labels[idx], minlength=5).tolist() == [3] * 5
    assert len(few_shot_indices(labels, paths, shots=0, cap=7, seed=0)) == 7
    assert len(few_shot_indices(labels, paths, shots=0, cap=0, seed=0)) == 50
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    idx2 = few_shot_indices(labels[perm], [paths[i] for i in perm], shots=3, cap=0, seed=0)
    assert sorted(paths[i] for i in idx) == sorted(paths[perm[i]] for i in idx2)


def test_weibull_fit_recovers_known_parameters():
    from scipy.stats import weibull_min

    x = weibull_min(c=2.5, scale=1.7).rvs(5000, random_state=0)
    shape, scale = fit_weibull(x)
    assert shape == pytest.approx(2.5, rel=0.05) and scale == pytest.approx(1.7, rel=0.05)
    assert lower_tail(np.arange(10.0), 0.3, 2).tolist() == [0.0, 1.0, 2.0]
    assert lower_tail(np.arange(10.0), 0.1, 4).tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="distinct positive"):
        fit_weibull(np.ones(10))


def test_evt_per_class_fits_pooled_fallback_and_outputs(caplog):
    rng = np.random.default_rng(0)
    scores = torch.tensor(np.concatenate([rng.normal(0.5, 0.05, 200), rng.normal(0.2, 0.05, 200),
                                          [0.3, 0.4]]))
    labels = torch.tensor([0] * 200 + [1] * 200 + [2, 2])
    with caplog.at_level(logging.INFO, logger="openood_immuno.methods.immuno.evt"):
        evt = EVTCalibrator.fit(scores, labels, 4, tail_fraction=0.5, min_samples=5)
    assert evt.pooled.tolist() == [False, False, True, True]
    assert "2 use the pooled fit" in caplog.text
    # class 0's fit equals a direct fit on its lower half, shifted by the floor
    s0 = np.sort(scores[:200].numpy())[:100] - evt.floor
    assert (evt.shape[0].item(), evt.scale[0].item()) == pytest.approx(fit_weibull(s0), rel=1e-6)
    assert evt.floor == pytest.approx(float(scores.min() - (scores.max() - scores.min())))
    grid = torch.linspace(-0.5, 1.0, 50, dtype=torch.float64)
    for c in range(4):
        cls = torch.full((50,), c)
        cdf, hazard = evt.cdf(grid, cls), evt.hazard(grid, cls)
        x = (grid - evt.floor).clamp(min=0)
        direct = 1 - torch.exp(-(x / evt.scale[c]) ** evt.shape[c])
        assert torch.allclose(cdf, direct, atol=1e-12)
        assert torch.all(cdf[1:] >= cdf[:-1])
        exact = cdf < 1 - 1e-9  # where the CDF has not rounded to 1.0
        assert torch.allclose(-torch.log1p(-cdf[exact]), hazard[exact], rtol=1e-6)
        above = x > 0  # the hazard keeps ranking where the CDF saturates (no ties)
        assert torch.all(hazard[above][1:] > hazard[above][:-1])
    assert (evt.cdf(grid, torch.zeros(50)) == 1.0).sum() > 5  # saturated ties the hazard avoids
    with pytest.raises(ValueError, match="at least 3 distinct validation scores"):
        EVTCalibrator.fit(torch.tensor([0.1, 0.2]), torch.tensor([0, 0]), 2)


def test_auto_margin():
    z, ab = unit(6, 8, seed=14), unit(4, 8, seed=15)
    y, owner = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 1, 2])
    own = [float(z[i] @ ab[a]) for i in range(6) for a in range(4) if owner[a] == y[i]]
    assert auto_margin(z, y, ab, owner, 0.75) == pytest.approx(float(np.quantile(own, 0.75)), abs=1e-6)


@pytest.mark.parametrize("d", [64, 512])
def test_isotropic_antibodies_are_uniform_on_the_sphere_not_near_the_prototypes(d):
    """Thm 3.5's classic negatives: cos to the owner's prototype ~ 0 (within 3/sqrt(d)),
    spread ~ 1/sqrt(d), unit norm, no preferred direction, seeded."""
    mu = unit(3, d, seed=16)
    owner = torch.tensor([0, 1, 2] * 200)
    noise = isotropic_antibodies(owner, d, seed=0)
    cos = (noise * mu[owner]).sum(1)
    assert noise.shape == (600, d) and torch.allclose(noise.norm(dim=1), torch.ones(600), atol=1e-5)
    assert abs(cos.mean().item()) < 3 / math.sqrt(d)
    assert cos.abs().max().item() < 6 / math.sqrt(d)   # none lands near its prototype
    assert cos.std().item() == pytest.approx(1 / math.sqrt(d), rel=0.15)
    assert noise.mean(0).norm().item() < 3 / math.sqrt(600)   # mean direction ~ 0
    assert torch.equal(noise, isotropic_antibodies(owner, d, seed=0))
    assert not torch.equal(noise, isotropic_antibodies(owner, d, seed=1))


def test_adapter_checkpoint_is_cached_by_content(tmp_path):
    z, y = unit(40, 8, seed=17), torch.arange(4).repeat(10)
    mu, ab, owner = unit(4, 8, seed=18), unit(8, 8, seed=19), torch.arange(4).repeat(2)
    kappa = torch.ones(4)
    params = ImmunoParams(epochs=3, adapter_hidden=16)
    a1, info1 = load_or_vaccinate(z, y, mu, kappa, ab, owner, params, 0.0, "unit-test", progress=False)
    a2, info2 = load_or_vaccinate(z, y, mu, kappa, ab, owner, params, 0.0, "unit-test", progress=False)
    assert not info1["cached"] and info2["cached"] and info1["path"] == info2["path"]
    assert torch.equal(a1(z), a2(z))
    assert info1["config"] == {**{n: params.get(n) for n in ImmunoParams.TRAINING}, "margin": 0.0}
    _, info3 = load_or_vaccinate(z, y, mu, kappa, ab[:7], owner[:7], params, 0.0, "unit-test",
                                 progress=False)
    assert not info3["cached"] and info3["path"] != info1["path"]
    assert tensor_digest(z) == tensor_digest(z.clone()) != tensor_digest(z + 1e-3)


# a valid value other than the default for every parameter the vaccination loop reads
OTHER_TRAINING_VALUE = {"adapter_hidden": 8, "epochs": 2, "lr": 2e-3, "batch_size": 64, "weight_decay": 0.0,
                        "beta": 1.0, "hard_k": 2, "seed": 1, "precision": "bf16"}


def test_adapter_key_changes_with_every_training_parameter_and_only_those():
    z, y = unit(8, 4, seed=1), torch.arange(2).repeat(4)
    tensors = (z, y, unit(2, 4, seed=2), torch.ones(2), unit(3, 4, seed=3), torch.tensor([0, 1, 1]))
    base = ImmunoParams()

    def key(params, margin=0.2):
        return adapter_key("net", params.training_args(margin), *tensors)

    assert set(OTHER_TRAINING_VALUE) == set(ImmunoParams.TRAINING)
    keys = {key(base.replace({name: value})) for name, value in OTHER_TRAINING_VALUE.items()}
    assert len(keys) == len(OTHER_TRAINING_VALUE) and key(base) not in keys
    assert key(base, 0.3) != key(base)                               # the resolved margin
    for name, value in {"tau": 0.2, "evt_tail": 0.25, "lambda": 2.0, "margin_quantile": 0.5}.items():
        assert key(base.replace({name: value})) == key(base)          # read after training only
