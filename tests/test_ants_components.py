"""ANTS pieces on hand-made inputs: threshold rule, miner, lambda, banks, bank scores."""
import numpy as np
import pytest
import torch

from openood_immuno.methods.ants import (ANTSParams, ENSBank, NegativeImageMiner, RunningMean, VSNLBank,
                                 adaptive_lambda, fuse, histogram_jump_threshold)
from openood_immuno.core.params import ParamError
from openood_immuno.scores.ants import balanced_bank_score, bank_score
from openood_immuno.scores.grouped import grouped_id_mass


# ---- adaptive threshold ---------------------------------------------------------------------
def test_threshold_jump_between_two_clusters():
    # counts per bin: [3, 2, 0, 0, 0, 0, 0, 0, 20, 5]; largest |jump| 0 -> 20 between bins 7 and 8
    scores = [0.05] * 3 + [0.15] * 2 + [0.85] * 20 + [0.95] * 5
    threshold, upper = histogram_jump_threshold(scores, eta=0.5)
    assert upper == pytest.approx(0.8)
    assert threshold == pytest.approx(0.05)          # median of the five scores below 0.8
    threshold, _ = histogram_jump_threshold(scores, eta=1.0)
    assert threshold == pytest.approx(0.15)


def test_threshold_percentile_interpolates_below_the_jump():
    # counts: [0, 0, 4, 0, 0, 0, 0, 0, 0, 1] -> first largest jump (|+4| at 1->2 vs |-4| at 2->3): j=1
    scores = [0.21, 0.23, 0.25, 0.29, 0.99]
    threshold, upper = histogram_jump_threshold(scores, eta=0.5)
    assert upper == pytest.approx(0.2)
    # nothing is below 0.2: the percentile is taken over all scores
    assert threshold == pytest.approx(float(np.percentile(scores, 50)))
    scores = [0.31, 0.33, 0.35, 0.37, 0.52, 0.55, 0.58, 0.59, 0.6, 0.61, 0.62]
    # counts: bin3 = 4, bin5 = 4 (0.52, 0.55, 0.58, 0.59), bin6 = 3 (0.6 .. 0.62)
    threshold, upper = histogram_jump_threshold(scores, eta=0.25)
    assert upper == pytest.approx(0.3)                # |0 -> 4| at bins 2 -> 3 comes first
    assert threshold == pytest.approx(float(np.percentile(scores, 25)))


def test_threshold_counts_one_in_the_last_bin_and_validates():
    _, upper = histogram_jump_threshold([1.0] * 6 + [0.5], eta=0.5)
    assert upper == pytest.approx(0.9)                # 1.0 falls in the last (closed) bin
    with pytest.raises(ValueError):
        histogram_jump_threshold([], 0.5)


@pytest.mark.parametrize("values,message", [
    ({"eta": 1.5}, r"eta must be a number in \[0, 1\], got 1.5"),
    ({"eta": -0.1}, r"eta must be a number in \[0, 1\]"),
    ({"hist_bins": 1}, r"hist_bins must be an integer >= 2, got 1"),
    ({"mine_min_cache": -1}, r"mine_min_cache must be an integer >= 0"),
    ({"ens_max_updates": -1}, r"ens_max_updates must be an integer >= 0"),
    ({"threshold_rule": "median"}, r"threshold_rule must be one of \('code', 'paper'\)"),
    ({"ens_bank_size": 0}, r"ens_bank_size must be an integer >= 1, got 0"),
    ({"ens_bank_policy": "lifo"}, r"ens_bank_policy must be one of \('code', 'fifo'\), got 'lifo'"),
])
def test_mining_and_bank_settings_are_validated_once_by_the_params(values, message):
    """The miner and the ENS bank read ANTSParams and trust it: each range is checked there."""
    with pytest.raises(ParamError, match=message):
        ANTSParams(**values)


def test_miner_caches_below_threshold_and_updates_from_all_scores():
    miner = NegativeImageMiner(ANTSParams(init_threshold=0.8, eta=0.5, hist_bins=10, mine_min_cache=2,
                                          ens_max_updates=2))
    mined = miner.observe(torch.tensor([0.1, 0.9, 0.2]), torch.tensor([4, 5, 6]), ["a", "b", "c"])
    assert mined.tolist() == [True, False, True] and not miner.ready()   # 2 cached: not MORE than 2
    miner.observe(torch.tensor([0.3, 0.95]), torch.tensor([7, 8]), ["d", "e"])
    assert miner.ready()
    items = miner.take()
    assert items == [("a", 4), ("c", 6), ("d", 7)] and miner.cache == [] and miner.updates == 1
    expected, _ = histogram_jump_threshold([0.1, 0.9, 0.2, 0.3, 0.95], 0.5)
    assert miner.threshold == pytest.approx(expected)
    assert miner.mined_predictions == {4: 1, 6: 1, 7: 1}
    miner.updates = 2                                  # budget spent: nothing cached any more
    miner.observe(torch.tensor([0.0]), torch.tensor([1]), ["z"])
    assert miner.cache == [] and miner.mined_predictions[1] == 1
    miner.reset()
    assert miner.threshold == 0.8 and miner.history == [] and miner.updates == 0


# ---- adaptive lambda -------------------------------------------------------------------------
@pytest.mark.parametrize("a,b,expected", [(0.9, 0.6, 0.1 / 0.5), (0.5, 0.5, 0.5), (0.2, 0.8, 0.8),
                                          (1.0, 1.0, 0.5), (1.0, 0.0, 0.0)])
def test_lambda_is_F_of_the_means(a, b, expected):
    assert adaptive_lambda(a, b) == pytest.approx(expected)


def test_fuse_and_running_mean():
    m = RunningMean()
    assert m.mean is None
    m.add(torch.tensor([0.2, 0.4]))
    m.add(torch.tensor([0.9]))
    assert m.mean == pytest.approx(0.5)
    assert torch.allclose(fuse(torch.tensor([1.0]), torch.tensor([0.0]), 0.3), torch.tensor([0.3]))


# ---- banks -----------------------------------------------------------------------------------
def _rows(*ids):
    return torch.tensor([[float(i)] for i in ids])


def test_ens_bank_code_policy_cuts_the_newest_when_full():
    bank = ENSBank(ANTSParams(ens_bank_size=4, ens_bank_policy="code"))
    bank.add(["a", "b", "c"], _rows(1, 2, 3))
    bank.add(["d", "e"], _rows(4, 5))                 # [d e a b c] -> last 4
    assert bank.texts == ["e", "a", "b", "c"]
    assert bank.features.flatten().tolist() == [5, 1, 2, 3]


def test_ens_bank_fifo_policy_drops_the_oldest():
    bank = ENSBank(ANTSParams(ens_bank_size=4, ens_bank_policy="fifo"))
    bank.add(["a", "b", "c"], _rows(1, 2, 3))
    bank.add(["d", "e"], _rows(4, 5))
    assert bank.texts == ["b", "c", "d", "e"]


def test_vsnl_bank_asks_each_class_once_and_unions_active_ones():
    bank = VSNLBank()
    assert bank.missing([3, 1]) == [3, 1]
    assert bank.update([3, 1], {3: ["tiger", "Lynx"], 1: ["lynx", "puma"]}) == ["tiger", "Lynx", "puma"]
    assert bank.missing([1, 7]) == [7]
    assert bank.update([7], {7: ["kayak"]}) == ["kayak"]          # 3 and 1 inactive: out of the bank
    assert bank.update([1], {}) == ["lynx", "puma"]              # kept answer reused, not asked again


# ---- bank scores -----------------------------------------------------------------------------
def test_bank_scores_fall_back_and_group_like_the_ants_code():
    torch.manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    id_text = torch.nn.functional.normalize(torch.randn(10, 8), dim=-1)
    bank = torch.nn.functional.normalize(torch.randn(25, 8), dim=-1)
    base = torch.rand(4)
    assert bank_score(feats, id_text, None, base) is base
    got = bank_score(feats, id_text, bank, base, 100.0, group_size=10, seed=0)
    logits = 100 * feats @ torch.cat([id_text, bank]).T
    assert torch.allclose(got, grouped_id_mass(logits, 10, "ants", group_size=10))
    balanced = balanced_bank_score(feats, id_text, bank, base, 100.0, repeats=2)
    logits2 = 100 * feats @ torch.cat([id_text, bank.repeat(2, 1)]).T
    assert torch.allclose(balanced, grouped_id_mass(logits2, 10, "ants", group_size=10))


def test_mllm_failure_budget_params_reach_the_backend(monkeypatch):
    from openood_immuno.methods.ants import scorer as scorer_module
    from openood_immuno.core.params import ParamError

    built = []

    def capture(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return None                                   # stop before any connection

    real = scorer_module.build_vision_backend
    monkeypatch.setattr(scorer_module, "build_vision_backend", capture)
    params = ANTSParams(mllm="openai:m@http://127.0.0.1:9", mllm_give_up_after=2,
                        mllm_failure_budget_s=7.5)
    assert scorer_module.load_mllm(params) is None
    assert (built[0].budget.max_consecutive, built[0].budget.budget_s) == (2, 7.5)
    default = ANTSParams()
    assert (default.mllm_give_up_after, default.mllm_failure_budget_s) == (5, 300.0)
    assert {"mllm_give_up_after", "mllm_failure_budget_s"} <= set(ANTSParams.BACKEND)
    with pytest.raises(ParamError, match="mllm_give_up_after"):
        ANTSParams(mllm_give_up_after=0)
    with pytest.raises(ParamError, match="mllm_failure_budget_s"):
        ANTSParams(mllm_failure_budget_s=0)
