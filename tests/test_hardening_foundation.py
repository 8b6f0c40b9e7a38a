"""Bad inputs of the foundation fail with errors that name the fix."""
import sys
import types

import pytest
import torch

import openood_immuno
from openood_immuno import build_postprocessor
from openood_immuno.data.features import FeatureSet


def _fitted(tiny_net):
    return build_postprocessor("mcm").fit(tiny_net, {})


def test_feature_dimension_mismatch(tiny_net):
    fs = FeatureSet("x", torch.ones(3, 512), torch.zeros(3, dtype=torch.long), ["a", "b", "c"])
    with pytest.raises(ValueError, match="embedding dimension is 64.*same CLIP model"):
        _fitted(tiny_net).score_feature_set(fs)


def test_nan_and_inf_features(tiny_net):
    feats = torch.ones(3, 64)
    feats[1, 0] = float("nan")
    feats[2, 5] = float("inf")
    fs = FeatureSet("x", feats, torch.zeros(3, dtype=torch.long), ["a", "b", "c"])
    with pytest.raises(ValueError, match="2 of 3 features of 'x' contain NaN or inf"):
        _fitted(tiny_net).score_feature_set(fs)


def test_register_without_openood_explains_install(monkeypatch):
    if "openood" in sys.modules or _importable("openood"):
        pytest.skip("OpenOOD is installed here")
    with pytest.raises(ImportError, match="not on PyPI.*git"):
        openood_immuno.register()


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_register_with_incompatible_openood(monkeypatch):
    fake = {name: types.ModuleType(name) for name in (
        "openood", "openood.evaluation_api", "openood.evaluation_api.evaluator",
        "openood.evaluation_api.postprocessor", "openood.postprocessors", "openood.postprocessors.utils")}
    fake["openood.evaluation_api.postprocessor"].get_postprocessor = lambda config: None
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    with pytest.raises(RuntimeError, match="incompatible OpenOOD version.*v1.5"):
        openood_immuno.register()


def test_console_command_reports_bad_input_in_one_line(minibench, tmp_path, capsys):
    from openood_immuno.cli import run

    argv = ["eval", "--data-root", str(minibench), "--model", "ImmunoTiny-ViT", "--pretrained",
            str(tmp_path / "missing.pt"), "--output-dir", str(tmp_path / "out")]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("openood-immuno: error: CLIP checkpoint") and "Traceback" not in err
    with pytest.raises(FileNotFoundError):
        run(["--verbose"] + argv)
