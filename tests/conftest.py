"""Shared fixtures: an isolated cache, a small randomly initialised CLIP, the minibench data_root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("OPENOOD_IMMUNO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MINIBENCH = SHARED / "data" / "minibench"
os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))
# README's command gives NLTK_DATA relative to the repository; tests that chdir must still find WordNet
os.environ["NLTK_DATA"] = os.pathsep.join(os.path.abspath(p) for p in os.environ["NLTK_DATA"].split(os.pathsep))
# Python processes the tests start (console scripts, `python -m`, torchrun workers) run in the
# repository root; without this, `python -c/-m` would put the root first on sys.path and import
# the source folder openood_immuno/ (which lacks the mapped postprocessors/ and configs/) instead
# of the installed package.
os.environ["PYTHONSAFEPATH"] = "1"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test session writes its caches to a fresh folder."""
    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("OPENOOD_IMMUNO_CACHE")
    os.environ["OPENOOD_IMMUNO_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("OPENOOD_IMMUNO_CACHE", None)
    else:
        os.environ["OPENOOD_IMMUNO_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_net(isolated_cache):
    """ImmunoTiny-ViT (d=64) with seeded random weights and the 1000 ImageNet class names."""
    import warnings

    from openood_immuno import build_clip_net

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_clip_net("ImmunoTiny-ViT", "none", "imagenet")


@pytest.fixture(scope="session")
def minibench() -> Path:
    if not (MINIBENCH / "benchmark_imglist").is_dir():
        pytest.fail(f"minibench data_root not found at {MINIBENCH} (set OPENOOD_IMMUNO_SHARED)")
    return MINIBENCH
