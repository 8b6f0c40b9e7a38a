"""Parameters: one dataclass per method is the only source of defaults; the shipped ymls state
only what differs; every value is typed and checked once, at load, with one clear message."""
import math
from pathlib import Path

import pytest
import yaml

from openood_immuno import available_postprocessors, build_postprocessor
from openood_immuno.methods.adaneg.params import AdaNegParams
from openood_immuno.methods.ants.params import ANTSParams
from openood_immuno.methods.classic import CLASSIC
from openood_immuno.methods.immuno.params import ImmunoDISParams, ImmunoParams, ImmunoZeroShotParams
from openood_immuno.methods.csp.params import CSPParams
from openood_immuno.methods.eoe.params import EOEParams
from openood_immuno.methods.glmcm.params import GLMCMParams
from openood_immuno.methods.mcm.params import MCMParams
from openood_immuno.methods.neglabel.params import NegLabelParams
from openood_immuno.methods.negrefine.params import NegRefineParams
from openood_immuno.openood.network_params import CLIPNetworkParams
from openood_immuno.experiments.param_docs import DOC_TABLES, stale_docs
from openood_immuno.core.params import ParamError, markdown_table
from openood_immuno.postprocessors.registry import postprocessor_class, with_shipped_defaults
from openood_immuno.core.ymlconfig import Config, config_dir, load_postprocessor_config

ROOT = Path(__file__).resolve().parents[1]
PARAMS = [MCMParams, NegLabelParams, ANTSParams, ImmunoZeroShotParams, ImmunoDISParams, ImmunoParams,
          CSPParams, EOEParams, AdaNegParams, GLMCMParams, NegRefineParams, CLIPNetworkParams,
          *(params for params, _ in CLASSIC.values() if params.names())]   # those with a parameter

# OpenOOD v1.5's own configs/postprocessors/mcm.yml (Jingkang50/OpenOOD), verbatim.
OPENOOD_MCM_YML = """\
postprocessor:
  name: mcm
  APS_mode: False
  postprocessor_args:
    tau: 1
  postprocessor_sweep:
    tau_list: [0.01, 1, 10]
"""


def raw(name):
    return yaml.safe_load((config_dir() / f"{name}.yml").read_text(encoding="utf-8"))


def chain(name):
    """The raw yml sections of ``name`` and its bases, base first."""
    data = raw(name)
    return (chain(data["base"]) if "base" in data else []) + [data["postprocessor"]]


# ---- the shipped ymls ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", available_postprocessors())
def test_every_shipped_yml_loads_and_every_key_is_a_field(name):
    pp = build_postprocessor(name)
    assert pp.name == name and type(pp.params) is pp.params_class
    fields = set(pp.params_class.names())
    for section in chain(name):
        assert set(section.get("postprocessor_args") or {}) <= fields, name
        assert {k[:-5] for k in section.get("postprocessor_sweep") or {}} <= fields, name
        assert all(k.endswith("_list") for k in section.get("postprocessor_sweep") or {}), name


@pytest.mark.parametrize("name", available_postprocessors())
def test_resolved_yml_is_the_dataclass_defaults_plus_its_few_overrides(name):
    """There is one source of defaults: a yml states only values that differ from it."""
    pp = build_postprocessor(name)
    cls = pp.params_class
    expected_args, sweep = cls().as_args(), {}
    for section in chain(name):
        for key, value in (section.get("postprocessor_args") or {}).items():
            assert cls.from_mapping({key: value}).get(key) != cls().get(key), \
                f"{name}.yml restates the default of {key}: drop it (the dataclass holds it)"
            expected_args[key] = cls.from_mapping({key: value}).as_args()[key]
        sweep.update(section.get("postprocessor_sweep") or {})
    named = {k[:-5]: v for k, v in sweep.items() if v is not None}
    # the sweep rule: named lists alone, else the default lists less the null entries
    expected_sweep = named or {k: v for k, v in cls.sweep_defaults().items() if f"{k}_list" not in sweep}
    assert pp.args == expected_args
    assert pp.args_dict == expected_sweep
    own = chain(name)[-1] if len(chain(name)) > 1 else {}
    overrides = len(own.get("postprocessor_args") or {}) + len(own.get("postprocessor_sweep") or {})
    assert overrides <= 5, f"{name}.yml should be its base plus a few lines"


def test_variants_are_their_base_plus_what_differs():
    assert build_postprocessor("ants_ens").params == ANTSParams(mode="far_only")
    assert build_postprocessor("ants_vsnl").params == ANTSParams(mode="near_only")
    assert list(build_postprocessor("ants_vsnl").args_dict) == ["vsnl_top_k", "group_size", "vsnl_interval"]
    assert build_postprocessor("immuno_ablation_noise").params == ImmunoParams(antibody_source="gaussian_noise",
                                                                                band_pass=False)
    assert build_postprocessor("immuno_ablation_unfiltered").params == ImmunoParams(band_pass=False)
    assert "delta_low" not in build_postprocessor("immuno_ablation_unfiltered").args_dict
    assert type(build_postprocessor("immuno_dis").params) is ImmunoDISParams
    assert set(build_postprocessor("immuno_zeroshot").args_dict) == {"lambda", "delta_low", "delta_high"}
    assert len((config_dir() / "ants_ens.yml").read_text().splitlines()) <= 12


@pytest.mark.parametrize("name", available_postprocessors())
def test_a_config_with_every_argument_written_out_still_loads(name):
    """A user's OpenOOD config that spells out every argument and sweep builds the same object."""
    pp = build_postprocessor(name)
    config = Config({"postprocessor": {"name": name, "APS_mode": False, "postprocessor_args": pp.args,
                                       "postprocessor_sweep": {f"{k}_list": v for k, v in pp.args_dict.items()}}})
    again = postprocessor_class(with_shipped_defaults(config))(with_shipped_defaults(config))
    assert again.params == pp.params and again.args_dict == pp.args_dict


# ---- the sweep rule (issue 18 F) ---------------------------------------------------------------------
SHIPPED_GRIDS = {  # combinations of every shipped APS grid (unchanged by the sweep rule)
    "ants": 162, "ants_ens": 27, "ants_vsnl": 27, "immuno": 2187, "immuno_ablation_noise": 243,
    "immuno_ablation_random_words": 243, "immuno_ablation_unfiltered": 243, "immuno_dis": 729,
    "immuno_no_antibodies": 81, "immuno_paper": 2187, "immuno_zeroshot": 27, "mcm": 5, "neglabel": 36,
    "immuno_ablation_noise_paper": 243, "immuno_ablation_random_words_paper": 243,
    "immuno_ablation_unfiltered_paper": 243, "immuno_no_antibodies_paper": 81, "immuno_table2_a": 1,
    "csp": 48, "eoe": 15, "adaneg": 81, "glmcm": 12, "negrefine": 16,
    "msp": 1, "ebo": 1, "mls": 1, "gen": 42, "gradnorm": 1, "react": 4, "ash": 7, "scale": 7, "dice": 1,
    "knn": 5, "vim": 1, "mds": 1, "rmds": 1, "klm": 1, "she": 1, "fdbd": 2, "nci": 4}


def _combos(args_dict) -> int:
    return math.prod(len(v) for v in args_dict.values())


@pytest.mark.parametrize("name", available_postprocessors())
def test_a_sweep_that_names_keys_sweeps_only_those(name):
    """A ``postprocessor_sweep`` naming some lists sweeps exactly those, on every route (our
    config, a user's OpenOOD config over the shipped one); every other parameter stays at its
    argument. Before: the named lists replaced their defaults and the rest of the default grid
    stayed (immuno, three keys of two values: 648 combinations instead of 8)."""
    shipped = build_postprocessor(name)
    assert _combos(shipped.args_dict) == SHIPPED_GRIDS[name]
    cls = shipped.params_class
    keys = list(cls.sweep_defaults())[-3:]
    sweep = {f"{k}_list": cls.sweep_defaults()[k][:2] for k in keys}
    config = Config({"postprocessor": {"name": name, "APS_mode": True, "postprocessor_args": {},
                                       "postprocessor_sweep": sweep}})
    merged = with_shipped_defaults(config)            # the OpenOOD main.py route after register()
    built = postprocessor_class(merged)(merged)
    # the user's lists; ants_vsnl's own named lists stay beside them (merged by the base: rule)
    own = {"vsnl_top_k": 3, "group_size": 3, "vsnl_interval": 3} if name == "ants_vsnl" else {}
    assert set(built.args_dict) == set(keys) | set(own), name
    assert _combos(built.args_dict) == math.prod(len(sweep[f"{k}_list"]) for k in keys) * math.prod(
        n for k, n in own.items() if k not in keys)
    assert built.params == shipped.params              # the others keep their (shipped) arguments


def test_immuno_three_key_sweep_searches_8_combinations_with_the_rest_at_their_args(monkeypatch):
    from openood_immuno.data.features import FeatureSet
    from openood_immuno.experiments import runner

    config = Config({"postprocessor": {
        "name": "immuno", "APS_mode": True, "postprocessor_args": {"delta_low": 0.5, "beta": 2.0},
        "postprocessor_sweep": {"lambda_list": [0.5, 1.0], "theta_deg_list": [10, 20],
                                "margin_quantile_list": [0.75, 0.9]}}})
    pp = postprocessor_class(config)(config)
    assert pp.args_dict == {"lambda": [0.5, 1.0], "theta_deg": [10.0, 20.0], "margin_quantile": [0.75, 0.9]}
    seen = []
    monkeypatch.setattr(type(pp), "on_hyperparam_change", lambda self: seen.append(
        (self.params.lam, self.params.theta_deg, self.params.margin_quantile, self.params.delta_low,
         self.params.beta, self.params.delta_high)))
    import torch

    def fake_score(fs, batch_size=256, progress=False):   # no fit: only the grid is under test
        conf = torch.linspace(0, 1, len(fs)).numpy()
        return conf.astype(int) * 0, conf, fs.labels.numpy()

    monkeypatch.setattr(pp, "score_feature_set", fake_score)
    fs = FeatureSet("v", torch.zeros(4, 8), torch.tensor([0, 1, 0, 1]))
    runner.hyperparam_search(pp, fs, fs, 4)
    assert len(seen) == 8 + 1                             # 8 combinations, then the best set again
    assert {s[3:] for s in seen} == {(0.5, 2.0, ImmunoParams().delta_high)}  # the rest: their args


def test_a_sweep_of_only_null_entries_narrows_the_default_grid_and_no_grid_is_written_so(monkeypatch):
    config = Config({"postprocessor": {"name": "mcm", "postprocessor_args": {},
                                       "postprocessor_sweep": {"T_list": None}}})
    assert postprocessor_class(config)(config).args_dict == {}
    from openood_immuno.openood.configs import run_config
    from openood_immuno.postprocessors import registry

    real = registry.resolved_params
    monkeypatch.setattr(registry, "resolved_params", lambda name: (real(name)[0], {}))
    written = run_config("imagenet", "mcm")["postprocessor"]["postprocessor_sweep"]
    assert written == {"T_list": None}                  # read back: no grid, not the default one
    again = Config({"postprocessor": {"name": "mcm", "postprocessor_args": {}, "postprocessor_sweep": written}})
    assert postprocessor_class(again)(again).args_dict == {}


# ---- OpenOOD's own mcm.yml (issue 11 item 3) -------------------------------------------------------
def test_openoods_own_mcm_yml_loads_with_tau_as_an_alias_of_T():
    config = Config(yaml.safe_load(OPENOOD_MCM_YML))
    merged = with_shipped_defaults(config)              # the main.py route after register()
    pp = postprocessor_class(merged)(merged)
    assert pp.params == MCMParams(T=1.0) and pp.args_dict == {"T": [0.01, 1.0, 10.0]}
    direct = postprocessor_class(config)(config)          # the yml alone, no shipped one
    assert direct.params == pp.params and direct.args_dict == pp.args_dict
    pp.set_hyperparam([10])
    assert pp.params.T == 10.0 and pp.get_hyperparam() == [10.0]
    assert build_postprocessor("mcm", tau=0.5).params.T == 0.5


def test_an_alias_and_its_name_together_are_refused():
    with pytest.raises(ParamError, match=r"both 'tau' and 'T' are given .*keep one"):
        MCMParams.from_mapping({"tau": 1, "T": 2}, "postprocessor 'mcm'")
    # the registry resolves aliases through the same method (Params.canonical), on each side
    with pytest.raises(ParamError, match=r"postprocessor 'mcm' overrides: both 'tau' and 'T' are given"):
        build_postprocessor("mcm", tau=0.5, T=2.0)
    config = Config(yaml.safe_load(OPENOOD_MCM_YML))
    config.postprocessor.postprocessor_sweep["T_list"] = [1.0]
    with pytest.raises(ParamError, match=r"postprocessor 'mcm': both 'tau_list' and 'T_list' are given"):
        with_shipped_defaults(config)


# ---- bad values, one class each (issue 12 item 5) -------------------------------------------------
BAD = [
    ("mcm", "T", ".inf", r"mcm\.T must be a finite number > 0, got inf"),
    ("mcm", "T", ".nan", r"mcm\.T must be a finite number > 0, got nan"),
    ("mcm", "T", "0", r"mcm\.T must be a number > 0, got 0$"),
    ("mcm", "T", "true", r"mcm\.T must be a number > 0, got True"),
    ("mcm", "templates", "[a photo]", r"mcm\.templates must be a template with one \{\} .*got 'a photo'"),
    ("mcm", "templates", "'a {} of {}'", r"mcm\.templates must be a list of texts, got the single text"),
    ("mcm", "templates", "[]", r"mcm\.templates must not be an empty list"),
    ("neglabel", "logit_scale", "0", r"neglabel\.logit_scale must be a number > 0, got 0$"),
    ("neglabel", "n_groups", "2.5", r"neglabel\.n_groups must be an integer >= 1, got 2\.5"),
    ("neglabel", "n_groups", "true", r"neglabel\.n_groups must be an integer >= 1, got True"),
    ("neglabel", "exclude_lexnames", "noun.animal",
     r"neglabel\.exclude_lexnames must be a list of texts, got the single text 'noun\.animal': write it "
     r"as a list, e.g. \[noun\.animal\]"),
    ("neglabel", "exclude_lexnames", "[animals]", r"neglabel\.exclude_lexnames has an invalid entry 'animals'"),
    ("neglabel", "quantile", "1.5", r"neglabel\.quantile must be a number in \[0, 1\], got 1\.5"),
    ("neglabel", "id_template", "'the nice'", r"neglabel\.id_template must be a template with one \{\}"),
    ("ants", "ens_prompt", "'Describe {it}.'",
     r"ants\.ens_prompt must be a text whose only field is \{class_name\} \(or none\), got 'Describe \{it\}\.'"),
    ("ants", "mining", "none", r"ants\.mining must be one of \('adaptive', 'fixed', 'off'\), got 'none'"),
    ("ants", "ens_selection", "eq7", r"ants\.ens_selection must be one of \('code', 'paper'\), got 'eq7'"),
    ("ants", "mllm_image_size", "-56", r"ants\.mllm_image_size must be an integer >= 0, got -56"),
    ("neglabel", "neg_fraction", "1", r"neglabel\.neg_fraction must be a number in \[0, 1\), got 1"),
    ("ants", "mllm_strict", "1", r"ants\.mllm_strict must be true or false, got 1"),
    ("ants", "mode", "both", r"ants\.mode must be one of \('ada', 'far_only', 'near_only'\), got 'both'"),
    ("ants", "vsnl_interval", "0", r"ants\.vsnl_interval must be an integer >= 1, got 0"),
    ("ants", "mllm", "qwen", r"ants\.mllm must be hf:NAME_OR_PATH, openai:MODEL@URL, scripted or none"),
    ("immuno", "epochs", "abc", r"postprocessor 'immuno': immuno\.epochs must be an integer >= 1, got 'abc'"),
    ("immuno", "epochs", "-3", r"immuno\.epochs must be an integer >= 1, got -3"),
    ("immuno", "shots", "-1", r"immuno\.shots must be an integer >= 0, got -1"),
    ("immuno", "margin", ".nan", r"immuno\.margin must be a finite number in \[-1, 1\], got nan"),
    ("immuno", "margin", "big", r"immuno\.margin must be a number or 'auto', got 'big'"),
    ("immuno", "lr", "-.inf", r"immuno\.lr must be a finite number > 0, got -inf"),
    ("immuno", "near_template", "'a photo of a'", r"immuno\.near_template must be a template with one \{\}"),
    ("immuno_zeroshot", "delta_low", "0.95",
     r"immuno_zeroshot\.delta_low must be <= delta_high, got delta_low 0\.95 > delta_high 0\.92"),
]


@pytest.mark.parametrize("name, key, text, message", BAD, ids=[f"{n}.{k}={t}" for n, k, t, _ in BAD])
def test_nonsense_values_are_refused_at_load_with_the_key_and_the_fix(name, key, text, message):
    value = yaml.safe_load(text)               # what a yml or `--pp-arg NAME.KEY=TEXT` gives
    with pytest.raises(ValueError, match=message):
        build_postprocessor(name, **{key: value})


def test_values_are_typed_once():
    p = NegLabelParams.from_mapping({"n_groups": 50.0, "exclude_lexnames": ["noun.plant"]})
    assert p.n_groups == 50 and type(p.n_groups) is int and p.exclude_lexnames == ("noun.plant",)
    assert type(MCMParams.from_mapping({"T": 2}).T) is float
    assert ImmunoParams.from_mapping({"margin": 0.2}).margin == 0.2
    assert ImmunoParams.from_mapping({"lambda": 2}).lam == 2.0


@pytest.mark.parametrize("name, typo, hint", [("mcm", "tempates", "'templates'"),
                                              ("immuno", "lamda", "'lambda'"),
                                              ("ants", "vsnl_topk_list", "'vsnl_top_k_list'")])
def test_unknown_keys_say_did_you_mean(name, typo, hint):
    args = {} if typo.endswith("_list") else {typo: 1}
    sweep = {typo: [1]} if typo.endswith("_list") else {}
    config = load_postprocessor_config(name)
    config.postprocessor.postprocessor_args = args
    config.postprocessor.postprocessor_sweep = sweep
    with pytest.raises(ValueError, match=rf"postprocessor '{name}': unknown parameter\(s\) \['{typo}'\].*"
                                         rf"did you mean {hint}"):
        postprocessor_class(config)(config)


@pytest.mark.parametrize("sweep, message", [
    ({"T_list": [1.0, float("nan")]}, r"mcm\.T_list entry must be a finite number > 0, got nan"),
    ({"T_list": "0.5"}, r"mcm\.T_list must be a non-empty list of values, got '0\.5'"),
    ({"T_list": []}, r"mcm\.T_list must be a non-empty list of values"),
])
def test_sweep_lists_are_checked_like_their_parameter(sweep, message):
    config = load_postprocessor_config("mcm")
    config.postprocessor.postprocessor_sweep = sweep
    with pytest.raises(ValueError, match=message):
        postprocessor_class(config)(config)


def test_set_hyperparam_rebuilds_validated_params(tiny_net):
    pp = build_postprocessor("mcm", APS_mode=True).fit(tiny_net, {})
    pp.set_hyperparam([0.5])
    assert pp.params == MCMParams(T=0.5) and pp.get_hyperparam() == [0.5]
    with pytest.raises(ValueError, match=r"mcm\.T must be a number > 0, got -1"):
        pp.set_hyperparam([-1.0])
    assert pp.params.T == 0.5


def test_every_default_is_valid_and_every_field_is_documented():
    for cls in PARAMS:
        cls()                                     # defaults pass their own checks
        for name, spec in cls.specs().items():
            assert spec.help, f"{cls.__name__}.{name} has no help"
            if spec.sweep is not None:
                assert [spec.coerce(v) for v in spec.sweep] == list(spec.sweep)
        table = markdown_table(cls)
        assert all(f"| `{name}` |" in table for name in cls.names())
    assert math.isclose(ImmunoParams().lam, 1.0)


# ---- yml inheritance ------------------------------------------------------------------------------
def test_base_chain_errors_name_the_file(tmp_path, monkeypatch):
    import openood_immuno.core.ymlconfig as ymlconfig

    (tmp_path / "a.yml").write_text("base: b\npostprocessor: {name: a}\n")
    (tmp_path / "b.yml").write_text("base: a\npostprocessor: {name: b}\n")
    (tmp_path / "c.yml").write_text("base: nope\npostprocessor: {name: c}\n")
    monkeypatch.setattr(ymlconfig, "config_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=r"a\.yml: 'base:' loops through a -> b -> a"):
        ymlconfig.load_postprocessor_config("a")
    with pytest.raises(KeyError, match=r"c\.yml: base 'nope' is not a shipped config"):
        ymlconfig.load_postprocessor_config("c")


# ---- docs -----------------------------------------------------------------------------------------
def test_doc_tables_are_generated_from_the_dataclasses():
    stale = stale_docs(ROOT)
    assert not stale, f"parameter tables out of date in {stale}: run python -m openood_immuno.experiments.param_docs --write-docs"
    assert {ref.rpartition(":")[2] for _, ref, _ in DOC_TABLES} == {c.__name__ for c in PARAMS}


def test_values_can_be_checked_without_building_anything():
    from openood_immuno.postprocessors.registry import resolved_params

    params, sweep = resolved_params("ants_ens", {"eta": 0.3})
    assert params == ANTSParams(mode="far_only", eta=0.3) and "vsnl_top_k" not in sweep
    with pytest.raises(ValueError, match=r"postprocessor 'immuno': immuno\.epochs must be an integer"):
        resolved_params("immuno", {"epochs": "abc"})
