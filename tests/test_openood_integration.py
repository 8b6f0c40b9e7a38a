"""Against a real OpenOOD v1.5 (skipped where OpenOOD is absent, as in CI).

Run in a venv where OpenOOD was installed from its git repository (see README, "OpenOOD").
Our postprocessors never call ``.cuda()``; OpenOOD's ACC column does
(``Evaluator._classifier_inference``), which :func:`prefill_id_predictions` serves from
cached features so these tests run on a CPU.
"""
import urllib.request

import pytest

openood = pytest.importorskip("openood.evaluation_api")

import openood_immuno  # noqa: E402
from openood_immuno import build_postprocessor  # noqa: E402
from openood_immuno.openood.bridge import prefill_id_predictions  # noqa: E402

ROWS = ["ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"]


@pytest.fixture
def no_download(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"OpenOOD tried to download {url}")

    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)


def _evaluate(net, minibench, tmp_path, **kwargs):
    from openood.evaluation_api import Evaluator

    evaluator = Evaluator(net, id_name="imagenet", data_root=str(minibench),
                          config_root=str(tmp_path / "configs"), preprocessor=net.preprocess,
                          batch_size=64, num_workers=0, **kwargs)
    prefill_id_predictions(evaluator)
    return evaluator, evaluator.eval_ood(progress=False)


def test_register_is_idempotent():
    import openood.evaluation_api.evaluator as ev_mod
    import openood.evaluation_api.postprocessor as api
    import openood.postprocessors.utils as pp_utils
    from openood.pipelines import test_ood_pipeline

    names = openood_immuno.register()
    wrapped = (api.get_postprocessor, ev_mod.get_postprocessor, pp_utils.get_postprocessor)
    assert openood_immuno.register() == names
    assert (api.get_postprocessor, ev_mod.get_postprocessor, pp_utils.get_postprocessor) == wrapped
    assert test_ood_pipeline.get_postprocessor is pp_utils.get_postprocessor
    for name in names:
        assert name in api.postprocessors
    assert "msp" in api.postprocessors  # OpenOOD's own names are untouched


def test_postprocessors_subclass_openood_base():
    from openood.postprocessors import BasePostprocessor

    assert isinstance(build_postprocessor("mcm"), BasePostprocessor)


def test_evaluator_by_name_finds_our_yml_without_download(tiny_net, minibench, tmp_path, no_download):
    openood_immuno.register()
    _, frame = _evaluate(tiny_net, minibench, tmp_path, postprocessor_name="mcm")
    assert list(frame.index) == ROWS
    assert list(frame.columns) == ["FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]
    assert not (tmp_path / "configs" / "postprocessors" / "mcm.yml").exists()


def test_evaluator_with_postprocessor_object_matches_builtin_runner(tiny_net, minibench, tmp_path,
                                                                     no_download):
    from openood_immuno.data.benchmarks import BenchmarkLists
    from openood_immuno.experiments.runner import FeatureStore, evaluate

    _, frame = _evaluate(tiny_net, minibench, tmp_path, postprocessor=build_postprocessor("mcm"))
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    ours = evaluate(build_postprocessor("mcm"), store)
    for row in ROWS:
        assert list(frame.loc[row]) == pytest.approx(ours.rows[row][:5], abs=1e-6)  # OpenOOD's columns


def test_openood_aps_uses_our_sweep(tiny_net, minibench, tmp_path, no_download):
    pp = build_postprocessor("mcm", APS_mode=True)
    _evaluate(tiny_net, minibench, tmp_path, postprocessor=pp)
    assert pp.hyperparam_search_done and pp.get_hyperparam()[0] in pp.args_dict["T"]


def test_main_py_route_builds_our_postprocessor():
    from openood.utils import Config

    openood_immuno.register()
    from openood.pipelines import test_ood_pipeline

    config = Config(**{"postprocessor": {"name": "mcm", "APS_mode": False,
                                         "postprocessor_args": {"T": 0.5}}})
    pp = test_ood_pipeline.get_postprocessor(config)
    assert type(pp).method == "mcm" and pp.args["T"] == 0.5
    assert pp.args["templates"] == ["a photo of a {}."]  # completed from the shipped yml
    msp = test_ood_pipeline.get_postprocessor(Config(**{"postprocessor": {"name": "msp", "APS_mode": False}}))
    assert type(msp).__name__ == "BasePostprocessor"


def test_glmcm_by_name_and_by_object_equals_the_builtin_runner_per_sample(tiny_net, minibench, tmp_path,
                                                                          no_download):
    """GL-MCM's local features reach OpenOOD's Evaluator through our ``inference`` (same pass)."""
    import numpy as np

    from openood_immuno.data.benchmarks import BenchmarkLists
    from openood_immuno.experiments.runner import FeatureStore, evaluate

    openood_immuno.register()
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False, local=True)
    ours = evaluate(build_postprocessor("glmcm"), store)
    for kwargs in ({"postprocessor_name": "glmcm"}, {"postprocessor": build_postprocessor("glmcm")}):
        evaluator, frame = _evaluate(tiny_net, minibench, tmp_path, **kwargs)
        np.testing.assert_allclose(evaluator.scores["id"]["test"][1], ours.scores["id"][1], atol=1e-6)
        for split in ("near", "far"):
            for name, scored in evaluator.scores["ood"][split].items():
                np.testing.assert_allclose(scored[1], ours.scores[name][1], atol=1e-6)
        # OpenOOD's Evaluator's ACC is the net's own classifier (its prompts, not GL-MCM's "a photo of
        # a {}"): our ACC_zeroshot; our ACC is GL-MCM's pred, as main.py's evaluator reports it
        for row in ROWS:
            assert list(frame.loc[row])[:4] == pytest.approx(ours.rows[row][:4], abs=1e-6)
            assert frame.loc[row]["ACC"] == pytest.approx(ours.rows[row][ours.columns.index("ACC_zeroshot")],
                                                          abs=1e-6)
