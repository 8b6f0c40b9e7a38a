"""The vision-language postprocessors added for the comparison tables, on every OpenOOD route,
against a real OpenOOD v1.5 (skipped where OpenOOD is absent, as in CI).

For each name: OpenOOD's ``Evaluator`` by name (after :func:`openood_immuno.register`, with small
arguments through its ``overrides``), ``Evaluator(postprocessor=obj)``, and OpenOOD's ``main.py``
route (our launcher, in a subprocess) give the same per-sample ``conf`` as the builtin runner on
the same cached features (minibench, random ImmunoTiny-ViT, CPU).
"""
import os
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import yaml

openood = pytest.importorskip("openood.evaluation_api")

import openood_immuno  # noqa: E402
from openood_immuno import build_postprocessor  # noqa: E402
from openood_immuno.data.benchmarks import BenchmarkLists  # noqa: E402
from openood_immuno.experiments.runner import FeatureStore, evaluate  # noqa: E402
from openood_immuno.methods.eoe import write_names  # noqa: E402
from openood_immuno.methods.neglabel import export_labels  # noqa: E402
from openood_immuno.methods.neglabel.mining import NegativeLabels  # noqa: E402
from openood_immuno.openood.bridge import prefill_id_predictions  # noqa: E402

NEAR, FAR = ("ssb_hard", "ninco"), ("inaturalist", "textures", "openimage_o")
TINY = ["--network.model", "ImmunoTiny-ViT", "--network.pretrained", "none", "--network.device", "cpu"]


def small_args(name: str, tmp_path) -> dict:
    """Arguments that keep each method's text bank small on the tiny net (a few seconds a fit)."""
    if name == "csp":
        return {"corpus_limit": 600, "n_groups": 8, "id_templates": ["the nice {}"],
                "noun_templates": ["the nice {}"], "adj_templates": ["{}"]}
    if name == "eoe":
        return {"outlier_names_file": str(write_names(["cloud", "river stone", "brick wall", "fog"],
                                                       tmp_path / "eoe_names.txt"))}
    if name == "negrefine":   # a filtered list: no LLM needed, not degraded; pairs on the tiny net
        labels = NegativeLabels(["cloud", "river stone", "brick wall", "fog", "sand", "tree"],
                                ["lively scene", "gigantic object"])
        return {"filtered_labels_file": str(export_labels(labels, tmp_path / "negrefine_labels.txt")),
                "n_groups": 4}
    raise KeyError(name)


NAMES = ["csp", "eoe", "negrefine"]


@pytest.fixture
def no_download(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"OpenOOD tried to download {url}")

    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)


def _builtin(name, args, tiny_net, minibench):
    store = FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)
    return evaluate(build_postprocessor(name, **args), store)


def _evaluator_scores(tiny_net, minibench, tmp_path, **kwargs) -> dict:
    from openood.evaluation_api import Evaluator

    evaluator = Evaluator(tiny_net, id_name="imagenet", data_root=str(minibench),
                          config_root=str(tmp_path / "configs"), preprocessor=tiny_net.preprocess,
                          batch_size=64, num_workers=0, **kwargs)
    prefill_id_predictions(evaluator)
    evaluator.eval_ood(progress=False)
    out = {"id": evaluator.scores["id"]["test"][1]}
    for split, names in (("near", NEAR), ("far", FAR)):
        out.update({n: evaluator.scores["ood"][split][n][1] for n in names})
    return out


def _assert_same(scores: dict, ours) -> None:
    for key, conf in scores.items():
        np.testing.assert_allclose(np.asarray(conf), ours.scores[key][1], atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_evaluator_by_name_and_by_object_equal_the_builtin_runner(name, tiny_net, minibench, tmp_path,
                                                                  no_download):
    args = small_args(name, tmp_path)
    ours = _builtin(name, args, tiny_net, minibench)
    openood_immuno.register({name: args})
    try:
        _assert_same(_evaluator_scores(tiny_net, minibench, tmp_path, postprocessor_name=name), ours)
    finally:
        openood_immuno.register()
    _assert_same(_evaluator_scores(tiny_net, minibench, tmp_path,
                                   postprocessor=build_postprocessor(name, **args)), ours)


@pytest.mark.parametrize("name", NAMES)
def test_main_py_launcher_equals_the_builtin_runner(name, tiny_net, minibench, tmp_path, isolated_cache):
    args = small_args(name, tmp_path)
    ours = _builtin(name, args, tiny_net, minibench)
    small = tmp_path / "small_args.yml"   # stacked on the run config: list values need a yml
    small.write_text(yaml.safe_dump({"postprocessor": {"postprocessor_args": args}}))
    env = {**os.environ, "OPENOOD_IMMUNO_CACHE": str(isolated_cache)}
    proc = subprocess.run([sys.executable, "-m", "openood_immuno.openood.main", "--config",
                           f"imagenet_clip_{name}.yml", str(small), "--data_root", str(minibench), "--output_dir",
                           str(tmp_path), *TINY], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = tmp_path / f"imagenet_clip_test_ood_ood_{name}_default" / "s0" / "ood"
    _assert_same({key: np.load(folder / "scores" / f"{'imagenet' if key == 'id' else key}.npz")["conf"]
                  for key in ("id", *NEAR, *FAR)}, ours)
