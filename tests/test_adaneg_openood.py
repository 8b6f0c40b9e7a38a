"""AdaNeg on every OpenOOD route against a real OpenOOD v1.5 (skipped where OpenOOD is absent): by
name and by object through ``Evaluator``, and OpenOOD's ``main.py`` launcher, each with the per-sample
scores of the builtin runner at the same batch size (the score depends on the batches: the memory is
written per batch). Every list starts from an empty memory (``reset_each_list``), as in the runner's
``openood`` protocol, so the lists' order between routes does not matter."""
import os
import subprocess
import sys

import numpy as np
import pytest

openood = pytest.importorskip("openood.evaluation_api")

import openood_immuno  # noqa: E402
from openood_immuno import build_postprocessor  # noqa: E402
from openood_immuno.data.benchmarks import BenchmarkLists  # noqa: E402
from openood_immuno.experiments.runner import FeatureStore, evaluate  # noqa: E402
from openood_immuno.openood.bridge import prefill_id_predictions  # noqa: E402

#: a 600-word corpus and 100 negatives: the tiny net encodes ~700 prompts, not ~70k
FAST = {"corpus_limit": 600, "n_neg_labels": 100}
NEAR, FAR = ("ssb_hard", "ninco"), ("inaturalist", "textures", "openimage_o")
ROWS = ["ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood"]


def _builtin(tiny_net, minibench, batch_size):
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    return evaluate(build_postprocessor("adaneg", **FAST), store, batch_size=batch_size)


@pytest.mark.parametrize("route", ["name", "object"])
def test_evaluator_scores_equal_the_builtin_runner(route, tiny_net, minibench, tmp_path):
    from openood.evaluation_api import Evaluator

    openood_immuno.register({"adaneg": FAST})
    try:
        chosen = ({"postprocessor_name": "adaneg"} if route == "name"
                  else {"postprocessor": build_postprocessor("adaneg", **FAST)})
        evaluator = Evaluator(tiny_net, id_name="imagenet", data_root=str(minibench),
                              config_root=str(tmp_path / "configs"), preprocessor=tiny_net.preprocess,
                              batch_size=64, num_workers=0, **chosen)
        prefill_id_predictions(evaluator)
        frame = evaluator.eval_ood(progress=False)
    finally:
        openood_immuno.register()   # no by-name overrides left for other tests
    assert type(evaluator.postprocessor).method == "adaneg"
    ours = _builtin(tiny_net, minibench, 64)
    np.testing.assert_allclose(evaluator.scores["id"]["test"][1], ours.scores["id"][1], atol=1e-6)
    for split, names in (("near", NEAR), ("far", FAR)):
        for name in names:
            np.testing.assert_allclose(evaluator.scores["ood"][split][name][1], ours.scores[name][1], atol=1e-6)
    for row in ROWS:
        assert list(frame.loc[row])[:4] == pytest.approx(ours.rows[row][:4], abs=1e-4), row
    assert evaluator.postprocessor.status()["order"] == ours.status["order"]


def test_main_py_launcher_scores_equal_the_builtin_runner(tiny_net, minibench, tmp_path, isolated_cache):
    """The launcher's lists come in batches of 128 (its dataset configs)."""
    args = [x for k, v in FAST.items() for x in (f"--postprocessor.postprocessor_args.{k}", str(v))]
    env = {**os.environ, "OPENOOD_IMMUNO_CACHE": str(isolated_cache)}
    command = [sys.executable, "-m", "openood_immuno.openood.main", "--config", "imagenet_clip_adaneg.yml",
               "--data_root", str(minibench), "--output_dir", str(tmp_path), "--network.model", "ImmunoTiny-ViT",
               "--network.pretrained", "none", "--network.device", "cpu", *args]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = tmp_path / "imagenet_clip_test_ood_ood_adaneg_default" / "s0" / "ood"
    ours = _builtin(tiny_net, minibench, 128)
    id_conf = np.load(folder / "scores" / "imagenet.npz")["conf"]
    np.testing.assert_allclose(id_conf, ours.scores["id"][1], atol=1e-6)
    for name in NEAR + FAR:
        np.testing.assert_allclose(np.load(folder / "scores" / f"{name}.npz")["conf"], ours.scores[name][1],
                                   atol=1e-6)
