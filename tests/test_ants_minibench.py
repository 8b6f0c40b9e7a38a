"""End to end on the minibench data_root: the paper's stream protocol (2 seeds) through the runner,
and stock OpenOOD's ``Evaluator(..., postprocessor_name='ants')`` where OpenOOD is installed.

Random ImmunoTiny-ViT weights and the scripted MLLM: these check the pipeline, not accuracy.
Small counts (mining cache 20, VSNL every 2 batches) so the banks fill on ~750-image streams.
"""
import warnings

import pytest

from openood_immuno import build_postprocessor
from openood_immuno.data.benchmarks import BenchmarkLists
from openood_immuno.experiments.runner import FeatureStore, evaluate

pytestmark = pytest.mark.filterwarnings("ignore:ANTS is using the 'scripted' MLLM")
ROWS = ["ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"]
SMALL = dict(mllm="scripted", n_neg_labels=500, corpus_limit=1500, n_groups=10, group_size=20,
             mine_min_cache=20, vsnl_start_batch=2, vsnl_interval=2, vsnl_top_k=5)


def _ants(name="ants", **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ANTS is using the 'scripted' MLLM")
        return build_postprocessor(name, **{**SMALL, **kw})


def test_stream_protocol_two_seeds(tiny_net, minibench):
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), batch_size=64, num_workers=0,
                         progress=False)
    pp = _ants()
    result = evaluate(pp, store, protocol="stream", seeds=(0, 1), batch_size=64)
    assert list(result.rows) == ROWS and set(result.std) == set(ROWS)
    status = pp.status()                 # the last stream: ID test + openimage_o, seed 1
    assert status["ens_updates"] >= 1 and status["ens_bank"] > 0 and status["vsnl_bank"] > 0
    assert status["mllm_cost"]["failures"] == 0 and not status["degraded"]
    assert any(s[1] > 0 for s in result.std.values())     # stream order matters for ANTS
    for row in ROWS:
        assert 0.0 <= result.rows[row][1] <= 100.0


def test_stock_openood_evaluator_by_name(tiny_net, minibench, tmp_path, monkeypatch):
    pytest.importorskip("openood.evaluation_api")
    from openood.evaluation_api import Evaluator

    import openood_immuno
    from openood_immuno.postprocessors import registry
    from openood_immuno.openood.bridge import prefill_id_predictions

    shipped = registry.load_postprocessor_config

    def small_config(name, id_name="imagenet"):   # the shipped yml with test-size counts
        config = shipped(name, id_name)
        config.postprocessor.postprocessor_args = {**config.postprocessor.postprocessor_args, **SMALL,
                                                   "mine_min_cache": 5}   # lists of 150 images
        return config

    monkeypatch.setattr(registry, "load_postprocessor_config", small_config)
    openood_immuno.register()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ANTS is using the 'scripted' MLLM")
        evaluator = Evaluator(tiny_net, id_name="imagenet", data_root=str(minibench),
                              config_root=str(tmp_path / "configs"), preprocessor=tiny_net.preprocess,
                              postprocessor_name="ants", batch_size=64, num_workers=0)
    pp = evaluator.postprocessor
    assert pp.name == "ants" and pp.args["reset_each_list"] is True
    prefill_id_predictions(evaluator)
    frame = evaluator.eval_ood(progress=False)
    assert list(frame.index) == ROWS
    status = pp.status()                 # the last list, scored alone: openimage_o (150 images)
    assert status["batch"] == 3 and status["ens_bank"] > 0 and status["vsnl_bank"] > 0
    assert status["mllm_cost"]["failures"] == 0
    # the Evaluator's protocol is the runner's `openood` protocol (same batch size)
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    ours_pp = _ants(mine_min_cache=5)
    ours = evaluate(ours_pp, store, protocol="openood", batch_size=64)
    for row in ROWS:
        assert list(frame.loc[row])[:4] == pytest.approx(ours.rows[row][:4], abs=1e-6)
    # both routes tell the same story of the banks: here one of the six lists never mined more
    # than mine_min_cache images, so its stream ended with an empty ENS bank (degraded, named)
    assert ours_pp.status()["bank_fill"] == status["bank_fill"]
    assert ours_pp.status()["degraded_reason"] == status["degraded_reason"] == \
        f"ENS bank empty at the end of {status['bank_fill']['ens_empty']} of 6 streams"
