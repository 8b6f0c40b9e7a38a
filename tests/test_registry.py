from pathlib import Path

import pytest

from openood_immuno import available_postprocessors, build_postprocessor
from openood_immuno.core.ymlconfig import config_dir, load_postprocessor_config
from openood_immuno.postprocessors.registry import postprocessor_class


def test_every_shipped_yml_builds_its_class():
    names = available_postprocessors()
    assert "mcm" in names
    for name in names:
        pp = build_postprocessor(name)
        assert pp.name == name
        assert hasattr(pp, "APS_mode") and pp.hyperparam_search_done is False
        assert set(pp.args_dict) <= set(pp.params_class.names())


def _installed_files():
    import json
    from importlib import metadata

    dist = metadata.distribution("openood-immuno")
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        pytest.skip("editable install: package data is read from the source tree")
    return [str(f) for f in dist.files]


def test_configs_and_postprocessors_ship_under_the_package_namespace():
    assert (config_dir() / "mcm.yml").is_file()
    files = _installed_files()
    assert "openood_immuno/configs/postprocessors/mcm.yml" in files
    assert "openood_immuno/postprocessors/mcm_postprocessor.py" in files
    assert "openood_immuno/data/imagenet_classes.json" in files
    assert not [f for f in files if f.startswith("postprocessors/") or f.startswith("configs/")]
    source = Path(__file__).resolve().parents[1] / "openood_immuno"
    for init in source.rglob("__init__.py"):
        rel = init.relative_to(source.parent).as_posix()
        assert rel in files, f"sub-package {init.parent.name} is not installed: add it to setup.cfg"
    for yml in (source.parent / "configs" / "postprocessors").glob("*.yml"):
        assert f"openood_immuno/configs/postprocessors/{yml.name}" in files


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['temperature'\].*valid ones are \['T', 'templates'\]"):
        build_postprocessor("mcm", temperature=2.0)


def test_unknown_postprocessor_lists_available():
    with pytest.raises(KeyError, match="available"):
        build_postprocessor("mcn")


def test_method_key_selects_class():
    config = load_postprocessor_config("mcm")
    assert postprocessor_class(config).method == "mcm"
    config.postprocessor.method = "nope"
    with pytest.raises(KeyError, match="no postprocessor class implements method 'nope'"):
        postprocessor_class(config)


def test_overrides_and_aps_flag():
    pp = build_postprocessor("mcm", APS_mode=True, T=0.5)
    assert pp.APS_mode is True and pp.args["T"] == 0.5


def test_no_top_level_postprocessors_module():
    import importlib.util

    assert importlib.util.find_spec("postprocessors") is None


def test_immuno_paper_variants_are_shipped_names_of_the_immuno_method():
    """The Table-2 rows, the antibody-free control and the paper's regime run by name (OpenOOD:
    tests/test_immuno_paper.py::test_paper_variants_run_by_name_in_openood; runner:
    ::test_table2_rows_run_by_name_in_the_runner)."""
    names = ("immuno_ablation_noise", "immuno_ablation_random_words", "immuno_ablation_unfiltered",
             "immuno_no_antibodies", "immuno_paper")
    assert set(names) <= set(available_postprocessors())
    for name in names:
        config = load_postprocessor_config(name)
        assert postprocessor_class(config).method == "immuno" and config.postprocessor.name == name
        pp = build_postprocessor(name)
        assert pp.trains and pp.decision_threshold() is not None


def test_static_table_names_every_postprocessor_class():
    """Every ImmunoPostprocessor subclass with a method in postprocessors/ is a row of
    ``METHODS`` (the table imports them by name: no package scan at run time)."""
    import importlib
    import pkgutil

    import openood_immuno.postprocessors as package
    from openood_immuno.postprocessors.base import ImmunoPostprocessor
    from openood_immuno.postprocessors.registry import METHODS

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found.update({obj.method: obj for obj in vars(module).values()
                      if isinstance(obj, type) and issubclass(obj, ImmunoPostprocessor) and obj.method
                      and obj.__module__ == module.__name__})
    assert METHODS == found
    source = (Path(package.__file__).parent / "registry.py").read_text()
    assert "importlib" not in source and "pkgutil" not in source


def test_postprocessors_registry_stays_below_openood_experiments_and_cli():
    import subprocess
    import sys

    code = ("import sys, openood_immuno.postprocessors.registry; "
            "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
            "(['openood_immuno', 'openood'], ['openood_immuno', 'experiments'], ['openood_immuno', 'cli'])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
