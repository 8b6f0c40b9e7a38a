"""Immuno-VLM as the paper evaluates it: the adapter hook in the net (no leak between
postprocessors), the method's own accuracy, the paper's training regime, the Table-2 rows and
the EVT decision (F1@tau)."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from openood_immuno import build_clip_net, build_postprocessor
from openood_immuno.data.features import FeatureSet
from openood_immuno.methods.immuno.params import ImmunoParams
from openood_immuno.core.metrics import f1_at_threshold
from openood_immuno.core.params import ParamError

CLASSES = ["tench", "goldfish", "great white shark"]
TABLE2 = {  # shipped name -> what differs from the full method (immuno)
    "immuno_ablation_noise": {"antibody_source": "gaussian_noise", "band_pass": False},
    "immuno_ablation_random_words": {"antibody_source": "random_words", "band_pass": False},
    "immuno_ablation_unfiltered": {"band_pass": False},
    "immuno_no_antibodies": {"beta": 0.0, "lambda": 0.0},
}


@pytest.fixture(scope="module")
def small_net():
    """ImmunoTiny-ViT (random weights) over three ImageNet classes: a WordNet bank in seconds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_clip_net("ImmunoTiny-ViT", "none", CLASSES)


def _split(name, per_class, seed, dim=64):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(len(CLASSES)).repeat_interleave(per_class)
    return FeatureSet(name, F.normalize(torch.randn(len(y), dim, generator=g), dim=1), y,
                      [f"{name}/{i:03d}.jpg" for i in range(len(y))])


@pytest.fixture(scope="module")
def small_id_features():
    return {"train": _split("train", 8, 0), "val": _split("val", 6, 1)}


def _images(n=4):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(7))


# ---- the adapter hook ---------------------------------------------------------------------------
def test_hook_adapts_forward_only_and_clears(small_net):
    from openood_immuno.methods.immuno.adapter import RejectionAdapter

    net, x = small_net, _images()
    raw = net.encode_image(x)
    zero_shot = net(x)
    identity = net.identity
    adapter = RejectionAdapter(net.embed_dim, 16)
    torch.nn.init.normal_(adapter.f[2].weight, std=0.5)  # not the identity
    mu = F.normalize(torch.randn(len(CLASSES), net.embed_dim), dim=1)
    net.set_adapter(adapter, mu, owner="test")
    try:
        logits, feats = net(x, return_feature=True)
        g = adapter(raw)
        assert torch.allclose(feats, g, atol=1e-5)
        assert torch.allclose(feats.norm(dim=1), torch.ones(len(x)), atol=1e-5)
        assert torch.allclose(logits, net.logit_scale * g @ mu.T, atol=1e-4)
        assert torch.allclose(net(x), logits)
        assert not torch.allclose(logits, zero_shot, atol=1e-3)
        # postprocessors and the feature cache see raw CLIP features, under the same identity
        assert torch.equal(net.encode_image(x), raw) and net.identity == identity
        assert net.adapter_hook.owner == "test" and "adapter" not in " ".join(net.state_dict())
    finally:
        net.clear_adapter()
    assert net.adapter_hook is None and torch.allclose(net(x), zero_shot)
    net.clear_adapter()  # a no-op without a hook


def test_hook_context_manager_restores_the_previous_state(small_net):
    net, x = small_net, _images(2)
    zero_shot = net(x)
    mu1 = F.normalize(torch.randn(len(CLASSES), net.embed_dim), dim=1)
    mu2 = F.normalize(torch.randn(len(CLASSES), net.embed_dim), dim=1)
    with net.adapted(None, mu1, "outer"):
        outer = net(x)
        assert torch.allclose(outer, net.logit_scale * net.encode_image(x) @ mu1.T, atol=1e-4)
        with net.adapted(None, mu2, "inner"):
            assert net.adapter_hook.owner == "inner"
        assert net.adapter_hook.owner == "outer" and torch.allclose(net(x), outer)
    assert net.adapter_hook is None and torch.allclose(net(x), zero_shot)


def test_hook_rejects_prototypes_of_another_shape(small_net):
    with pytest.raises(ValueError, match=r"must have shape \[C, 64\]"):
        small_net.set_adapter(None, torch.randn(3, 32))
    with pytest.raises(ValueError, match="2 adapter prototypes for 3 ID classes"):
        small_net.set_adapter(None, torch.randn(2, 64))
    assert small_net.adapter_hook is None


@pytest.mark.parametrize("name", ["immuno", "immuno_dis", "immuno_zeroshot"])
def test_immuno_installs_its_classifier_and_the_next_fit_removes_it(small_net, small_id_features, name):
    net, x = small_net, _images()
    zero_shot = net(x)
    pp = build_postprocessor(name, **({} if name == "immuno_zeroshot" else {"epochs": 3}))
    pp.fit(net, small_id_features)
    assert net.adapter_hook is not None and net.adapter_hook.owner == name
    pred, _ = pp.score_features(net.encode_image(x))
    logits, feats = net(x, return_feature=True)
    assert torch.equal(logits.argmax(1), pred)  # OpenOOD's ACC = the method's own predictions
    assert torch.allclose(feats, pp.scorer.adapt(net.encode_image(x)), atol=1e-5)
    # any postprocessor fitted next on the same net starts from zero-shot CLIP
    build_postprocessor("mcm").fit(net, small_id_features)
    assert net.adapter_hook is None and torch.allclose(net(x), zero_shot)


def test_aps_step_reinstalls_the_refitted_classifier(small_net, small_id_features):
    pp = build_postprocessor("immuno", epochs=2).fit(small_net, small_id_features)
    first = small_net.adapter_hook
    pp.set_hyperparam([2.0] + pp.get_hyperparam()[1:])  # lambda
    assert small_net.adapter_hook is not first and small_net.adapter_hook.owner == "immuno"
    assert torch.equal(small_net.adapter_hook.prototypes, pp.scorer.prototypes)
    small_net.clear_adapter()


def test_a_net_without_the_hook_still_works(small_id_features):
    """Test doubles and other OpenOOD nets have no set_adapter: nothing is installed."""
    from test_immuno_synthetic import make_world

    net, bank, id_features, test, _ = make_world()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pp = build_postprocessor("immuno_dis", antibody_bank=str(bank.save(f"{tmp}/b.json")),
                                 epochs=2).fit(net, id_features)
    assert not hasattr(net, "adapter_hook") and pp.score_features(test.features)[0].shape == (len(test),)


# ---- the paper's training regime ----------------------------------------------------------------
def test_shots_all_and_the_paper_preset():
    assert ImmunoParams(shots="all").n_shots == 0 == ImmunoParams(shots=0).n_shots
    assert ImmunoParams(shots=16).n_shots == 16 and ImmunoParams().shots == 16
    with pytest.raises(ParamError, match=r"shots must be a number or 'all', got 'some'"):
        ImmunoParams(shots="some")
    paper = build_postprocessor("immuno_paper")
    assert paper.params == ImmunoParams(shots="all", epochs=10, evt_fit="val")
    assert paper.args["shots"] == "all" and paper.trains


def test_shots_all_trains_on_the_whole_training_list(small_net, small_id_features):
    every = build_postprocessor("immuno_dis", shots="all", epochs=1).fit(small_net, small_id_features)
    few = build_postprocessor("immuno_dis", shots=2, epochs=1).fit(small_net, small_id_features)
    assert every.scorer.vaccination["train_size"] == len(small_id_features["train"])
    assert few.scorer.vaccination["train_size"] == 2 * len(CLASSES)
    small_net.clear_adapter()


def test_postprocessors_that_train_say_so():
    for name in ("immuno", "immuno_dis", "immuno_paper", *TABLE2):
        pp = build_postprocessor(name)
        assert pp.trains and "seed" in pp.params_class.names(), name
    for name in ("mcm", "neglabel", "immuno_zeroshot"):
        assert not build_postprocessor(name).trains, name


# ---- Table 2 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TABLE2))
def test_table2_rows_differ_from_the_full_method_exactly_as_documented(name):
    pp = build_postprocessor(name)
    assert type(pp).method == "immuno"
    assert pp.params == ImmunoParams().replace(TABLE2[name])


PAPER_REGIME = {"shots": "all", "epochs": 10, "evt_fit": "val"}


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_every_table2_row_has_a_paper_regime_variant(name):
    """Rows B-D and the control as the paper ran them (all shots, 10 epochs, EVT on val);
    row E is immuno_paper."""
    pp = build_postprocessor(f"{name}_paper")
    assert type(pp).method == "immuno" and pp.name == f"{name}_paper"
    assert pp.params == ImmunoParams().replace({**TABLE2[name], **PAPER_REGIME})


def test_table2_row_a_is_msp_of_frozen_clip():
    """Row (A) "Frozen CLIP": max softmax of CLIP's logits 100 x cos (Table 1's MSP row)."""
    from openood_immuno.methods.mcm.params import MCMParams

    pp = build_postprocessor("immuno_table2_a")
    assert type(pp).method == "mcm" and pp.params == MCMParams(T=0.01) and not pp.args_dict.get("T")
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    x = torch.nn.functional.normalize(torch.randn(7, 8), dim=1)

    class Net:
        class_names = [f"c{i}" for i in range(5)]
        identity, embed_dim = "toy", 8

        def encode_text(self, names, templates=None):
            return text

    pp.fit(Net(), {})
    pred, conf = pp.score_features(x)
    msp = (100 * x @ text.T).softmax(1)
    assert torch.allclose(conf.float(), msp.max(1).values, atol=1e-5) and torch.equal(pred, msp.argmax(1))


def test_no_filter_keeps_every_antibody_of_the_bank(small_net, small_id_features):
    full = build_postprocessor("immuno_zeroshot").fit(small_net, small_id_features)
    off = build_postprocessor("immuno_zeroshot", band_pass=False).fit(small_net, small_id_features)
    assert off.scorer.antibodies.shape[0] == int(off.scorer.report.before.sum())
    assert off.scorer.antibodies.shape[0] >= full.scorer.antibodies.shape[0]
    assert "band-pass off" in off.scorer.report.summary()
    small_net.clear_adapter()


def test_noise_row_uses_isotropic_antibodies(small_net, small_id_features):
    pp = build_postprocessor("immuno_ablation_noise", epochs=1).fit(small_net, small_id_features)
    s = pp.scorer
    cos = (s.antibodies * s.prototypes[s.owner]).sum(1)
    assert abs(float(cos.mean())) < 3 / math.sqrt(small_net.embed_dim)
    small_net.clear_adapter()


# ---- EVT decision: F1@tau -----------------------------------------------------------------------
def test_f1_at_tau_on_a_hand_made_example():
    conf = np.array([0.9, 0.8, 0.3, 0.2, 0.05])
    label = np.array([0, 1, 0, -1, -1])
    assert f1_at_threshold(conf, label, 0.25) == 1.0                  # TP 2, FP 0, FN 0
    assert f1_at_threshold(conf, label, 0.5) == pytest.approx(0.8)    # TP 2, FP 1: 4 / 5
    assert f1_at_threshold(conf, label, 0.1) == pytest.approx(2 / 3)  # TP 1, FN 1: 2 / 3
    assert f1_at_threshold(conf, label, 0.0) == 0.0                   # nothing rejected
    with pytest.raises(ValueError, match="both ID"):
        f1_at_threshold(conf[:3], label[:3], 0.5)


@pytest.mark.parametrize("evt_output", ["hazard", "cdf"])
def test_decision_threshold_is_the_papers_rule(small_net, small_id_features, evt_output):
    """conf < decision_threshold() exactly when F_pred(DIS) < tau (Sec. 3.6)."""
    pp = build_postprocessor("immuno", epochs=1, evt_output=evt_output, tau=0.3,
                             evt_min_samples=3).fit(small_net, small_id_features)
    probe = _split("probe", 40, 5).features
    _, conf = pp.score_features(probe)
    _, accepted = pp.scorer.accept(probe, 0.3)
    assert torch.equal(conf.double() >= pp.decision_threshold(), accepted)
    assert 0 < int(accepted.sum()) < len(probe)
    assert pp.artifacts()["evt_reject_below"].shape == (len(CLASSES),)
    assert build_postprocessor("immuno_dis").decision_threshold() is None
    small_net.clear_adapter()


def test_tau_is_validated_and_not_in_the_default_aps_grid():
    with pytest.raises(ParamError, match=r"tau must be a number in \(0, 1\), got 1.0"):
        ImmunoParams(tau=1.0)
    assert "tau" not in build_postprocessor("immuno").args_dict
    pp = build_postprocessor("immuno")
    assert ImmunoParams.specs()["tau"].sweep == (0.01, 0.05, 0.1, 0.2)
    assert pp.params.tau == 0.05  # with the censored EVT fit: the share of ID images rejected


# ---- real OpenOOD (skipped where it is absent, as in CI) -------------------------------------------
def _openood_evaluator(net, minibench, tmp_path, name, monkeypatch=None):
    """``Evaluator(..., postprocessor_name=name).eval_ood()``. With ``monkeypatch``, OpenOOD's
    own ACC path runs (``_classifier_inference``: ``argmax net(x)``, its ``Tensor.cuda`` made a
    no-op for a CPU); without, the bridge's ``prefill_id_predictions`` serves it from cached
    features."""
    pytest.importorskip("openood.evaluation_api")
    import openood_immuno
    from openood.evaluation_api import Evaluator
    from openood_immuno.openood.bridge import prefill_id_predictions

    openood_immuno.register()
    evaluator = Evaluator(net, id_name="imagenet", data_root=str(minibench),
                          config_root=str(tmp_path / "configs"), preprocessor=net.preprocess,
                          postprocessor_name=name, batch_size=64, num_workers=0)
    if monkeypatch is not None:
        monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
    else:
        prefill_id_predictions(evaluator)
    return evaluator, evaluator.eval_ood(progress=False)


def test_openood_acc_is_the_vaccinated_accuracy(tiny_net, minibench, tmp_path, monkeypatch):
    from openood_immuno.data.features import extract_features
    from openood_immuno.openood.bridge import prefill_id_predictions

    evaluator, frame = _openood_evaluator(tiny_net, minibench, tmp_path, "immuno", monkeypatch)
    assert tiny_net.adapter_hook is not None and tiny_net.adapter_hook.owner == "immuno"
    id_pred, _, id_label = evaluator.scores["id"]["test"]
    openood_pred = np.asarray(evaluator.scores["id_preds"])
    assert np.array_equal(openood_pred, id_pred)  # argmax net(x) == the method's own predictions
    vaccinated = 100 * float(np.mean(id_pred == id_label))
    assert frame["ACC"].tolist() == pytest.approx([vaccinated] * len(frame))
    fs = extract_features(tiny_net, evaluator.dataloader_dict["id"]["test"], "test_imagenet")
    zero_shot_pred = (fs.features @ tiny_net.class_text_features.T).argmax(1).numpy()
    assert not np.array_equal(zero_shot_pred, openood_pred)  # the hook, not zero-shot CLIP
    prefill_id_predictions(evaluator)  # the CPU shortcut gives OpenOOD's own predictions
    assert np.array_equal(evaluator.scores["id_preds"], openood_pred)
    tiny_net.clear_adapter()


def test_paper_variants_run_by_name_in_openood(tiny_net, minibench, tmp_path):
    for name in sorted(TABLE2) + ["immuno_paper"]:
        evaluator, frame = _openood_evaluator(tiny_net, minibench, tmp_path / name, name)
        assert evaluator.postprocessor.name == name and list(frame.columns)[-1] == "ACC"
        assert np.isfinite(frame.to_numpy()).all()
        own = evaluator.scores["id"]["test"]
        assert frame["ACC"].iloc[0] == pytest.approx(100 * float(np.mean(own[0] == own[2])))
    tiny_net.clear_adapter()


# ---- two accuracies, seeds and F1@tau in the runner (minibench, tiny random model) ---------------
@pytest.fixture(scope="module")
def store(tiny_net, minibench):
    from openood_immuno.data.benchmarks import BenchmarkLists
    from openood_immuno.experiments.runner import FeatureStore

    return FeatureStore(tiny_net, str(minibench), BenchmarkLists(), num_workers=0, progress=False)


def _column(result, name):
    return [row[result.columns.index(name)] for row in result.rows.values()]


def test_stateless_scorers_report_acc_equal_to_acc_zeroshot(store):
    """Stateless scorers that classify with the net's own prompt ('a photo of a {}.')."""
    from openood_immuno.experiments.runner import RESULT_COLUMNS, evaluate

    for name in ("mcm", "immuno_zeroshot"):
        result = evaluate(build_postprocessor(name), store)
        assert result.columns == RESULT_COLUMNS, name  # no decision rule: no F1@tau
        assert _column(result, "ACC") == pytest.approx(_column(result, "ACC_zeroshot"), abs=1e-9), name


def test_acc_is_each_postprocessors_own_prediction_accuracy(store):
    """NegLabel classifies with its own ID prompt ('The nice {}.'): its ACC is that classifier's."""
    from openood_immuno.experiments.runner import evaluate

    result = evaluate(build_postprocessor("neglabel"), store)
    pred, _, label = result.scores["id"]
    assert _column(result, "ACC") == pytest.approx([100 * float(np.mean(pred == label))] * len(result.rows))


def test_immuno_acc_is_its_own_prediction_accuracy_and_the_hook_is_removed(store, tiny_net):
    from openood_immuno.experiments.runner import DECISION_COLUMN, evaluate, zero_shot_accuracy

    pp = build_postprocessor("immuno")
    result = evaluate(pp, store)
    pred, _, label = result.scores["id"]
    own = 100 * float(np.mean(pred == label))
    assert _column(result, "ACC") == pytest.approx([own] * len(result.rows))
    test = store.get("test_imagenet", store.lists.id["test"])
    assert _column(result, "ACC_zeroshot") == pytest.approx([100 * zero_shot_accuracy(tiny_net, test)]
                                                            * len(result.rows))
    assert not np.array_equal(pred, (test.features @ tiny_net.class_text_features.T).argmax(1).numpy())
    assert result.columns[-1] == DECISION_COLUMN and tiny_net.adapter_hook is None
    f1 = _column(result, DECISION_COLUMN)
    assert all(0 <= v <= 100 for v in f1)
    assert result.rows["nearood"][-1] == pytest.approx(np.mean([result.rows[n][-1] for n in ("ssb_hard", "ninco")]))


def test_seeds_refit_a_postprocessor_that_trains(store):
    from openood_immuno.experiments.runner import evaluate

    pp = build_postprocessor("immuno_dis", epochs=3)
    result = evaluate(pp, store, "openood", seeds=[0, 1, 2])
    assert pp.params.seed == 2 and result.std is not None
    auroc = result.columns.index("AUROC")
    assert max(result.std[row][auroc] for row in result.rows) > 0  # training differs by seed
    zs = result.columns.index("ACC_zeroshot")
    assert all(result.std[row][zs] == pytest.approx(0, abs=1e-9) for row in result.rows)
    once = evaluate(build_postprocessor("immuno_dis", epochs=3), store, "openood")
    assert once.std is None  # no --seeds: one fit with the postprocessor's own seed
    stateless = evaluate(build_postprocessor("mcm"), store, "openood", seeds=[0, 1, 2])
    assert stateless.std is None  # fitted once: nothing varies in the openood protocol


def test_table2_rows_run_by_name_in_the_runner(store, tiny_net):
    from openood_immuno.experiments.runner import evaluate

    for name in sorted(TABLE2) + [f"{n}_paper" for n in sorted(TABLE2)] + ["immuno_paper"]:
        result = evaluate(build_postprocessor(name, epochs=2), store)
        assert result.postprocessor == name and np.isfinite(list(result.rows.values())).all()
        assert tiny_net.adapter_hook is None


def test_runner_acc_equals_openood_acc(tiny_net, minibench, tmp_path, store):
    """The done-when: OpenOOD's Evaluator (ACC = argmax net(x) through the hook) and our runner
    report the same vaccinated accuracy."""
    from openood_immuno.experiments.runner import evaluate

    _, frame = _openood_evaluator(tiny_net, minibench, tmp_path, "immuno")
    tiny_net.clear_adapter()
    ours = evaluate(build_postprocessor("immuno"), store)
    acc = ours.columns.index("ACC")
    assert frame["ACC"].tolist() == pytest.approx([ours.rows[row][acc] for row in frame.index], abs=1e-9)


def test_ood_csv_report_and_leaderboard_carry_both_accuracies_and_f1(tmp_path):
    import csv
    import json

    from openood_immuno.experiments.report import write_report
    from openood_immuno.experiments.results import RunSpec, write_run
    from openood_immuno.experiments.runner import DECISION_COLUMN, RESULT_COLUMNS, EvalResult

    rows = {r: [50.0, 60.0, 70.0, 40.0, 12.5, 10.0, 33.3]
            for r in ("ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood")}
    result = EvalResult("immuno", rows, columns=RESULT_COLUMNS + (DECISION_COLUMN,))
    spec = RunSpec("imagenet", "ViT-B-16", "openai", "ViT-B-16|tag:openai", "/data", {}, "immuno", {},
                   "openood", seeds=(0, 1), trains=True)
    run = write_run(str(tmp_path / "res"), spec, result)
    with open(run / "ood.csv") as fh:
        first = next(csv.DictReader(fh))
    assert (first["ACC"], first["ACC_zeroshot"], first["F1@tau"], first["status"]) == ("12.50", "10.00",
                                                                                         "33.30", "ok")
    meta = json.loads((run / "run.json").read_text())
    assert meta["trains"] is True and meta["seeds"] == [0, 1]
    assert meta["id_accuracy"] == {"ACC": 12.5, "ACC_zeroshot": 10.0} and meta["columns"][-1] == "F1@tau"
    assert spec.key() != RunSpec(**{**spec.__dict__, "seeds": (0,)}).key()  # seeds key a training run
    md = write_report(str(tmp_path / "res"), str(tmp_path / "out")).read_text()
    assert "| 12.50 | 10.00 | 33.30 | 33.30 |" in md  # ID acc, zero-shot acc, near and far F1@tau
    with open(tmp_path / "out" / "leaderboard.csv") as fh:
        (board,) = list(csv.DictReader(fh))
    assert board["ID_Accuracy"] == "12.50" and board["ID_Accuracy_zeroshot"] == "10.00"
    assert board["Training"] == "CLIP (openai) + trained adapter"
    with pytest.raises(ValueError, match="one value per column"):
        EvalResult("immuno", {"ninco": [1.0, 2.0]})


def test_console_table_has_the_extra_columns():
    from openood_immuno.experiments.runner import DECISION_COLUMN, RESULT_COLUMNS, EvalResult

    table = EvalResult("immuno", {"ninco": [1.0] * 7}, columns=RESULT_COLUMNS + (DECISION_COLUMN,)).format()
    assert "ACC_zeroshot" in table.splitlines()[0] and "F1@tau" in table.splitlines()[0]


def test_eval_seeds_choose_the_builtin_engine():
    """OpenOOD's Evaluator fits once: --seeds (a refit per training seed) runs in our runner."""
    from argparse import Namespace

    from openood_immuno.cli.args import UsageError
    from openood_immuno.cli.eval import _engine

    args = Namespace(engine="auto", protocol="openood", benchmark="openood", extra_ood=[], seeds="0,1,2")
    assert _engine(args) == "builtin"
    with pytest.raises(UsageError, match="--engine openood supports only .* --seeds"):
        _engine(Namespace(engine="openood", protocol="openood", benchmark="openood", extra_ood=[], seeds="0,1"))


def test_results_name_their_bank_and_regime_everywhere(tmp_path):
    """Issue 19: ood.csv, run.json, report.md and the leaderboard carry the label with the
    regime (immuno [wordnet, 16-shot x 20]), the bank's SHA-256, ID_reject@tau and the note."""
    import csv
    import json

    from openood_immuno.experiments.report import write_report
    from openood_immuno.experiments.results import RunSpec, write_run
    from openood_immuno.experiments.runner import DECISION_COLUMNS, RESULT_COLUMNS, EvalResult

    rows = {r: [50.0, 60.0, 70.0, 40.0, 12.5, 10.0, 5.2, 33.3]
            for r in ("ssb_hard", "ninco", "nearood", "inaturalist", "textures", "openimage_o", "farood")}
    describe = {"antibodies": {"source": "wordnet", "bank": "wordnet", "bank_sha256": "ab" * 32},
                "regime": {"shots": 16, "epochs": 20, "precision": "fp32", "max_train": 0}}
    note = "EVT: every class uses the pooled Weibull fit (100 fit images for 1000 classes), so conf ranks exactly as immuno_dis"
    result = EvalResult("immuno", rows, columns=RESULT_COLUMNS + DECISION_COLUMNS,
                        label="immuno [wordnet, 16-shot x 20, EVT pooled]", describe=describe,
                        status={"evt_fit": "val (100 images)", "note": note})
    assert result.columns[-2:] == ("ID_reject@tau", "F1@tau")
    assert "immuno [wordnet, 16-shot x 20, EVT pooled]" in result.format()
    spec = RunSpec("imagenet", "ViT-B-16", "openai", "ViT-B-16|tag:openai", "/data", {}, "immuno", {},
                   "openood", trains=True)
    run = write_run(str(tmp_path / "res"), spec, result)
    with open(run / "ood.csv") as fh:
        first = next(csv.DictReader(fh))
    assert first["label"] == "immuno [wordnet, 16-shot x 20, EVT pooled]" and first["ID_reject@tau"] == "5.20"
    meta = json.loads((run / "run.json").read_text())
    assert meta["label"] == first["label"] and meta["describe"] == describe
    assert meta["status"]["state"] == "ok" and meta["status"]["postprocessor_status"]["note"] == note
    md = write_report(str(tmp_path / "res"), str(tmp_path / "out")).read_text()
    assert "| immuno [wordnet, 16-shot x 20, EVT pooled] |" in md and "ab" * 32 in md and note in md
    assert "| 12.50 | 10.00 | 33.30 | 33.30 | 5.20 |" in md
    with open(tmp_path / "out" / "leaderboard.csv") as fh:
        (board,) = list(csv.DictReader(fh))
    assert board["Postprocessor"] == "immuno [wordnet, 16-shot x 20, EVT pooled]"
    assert board["Additional_Description"].endswith(f"bank sha256 {'ab' * 32}")


def test_ants_label_names_its_mllm():
    assert build_postprocessor("ants", mllm="none").label_suffix() == ""   # its stand-in mark says it
    pp = build_postprocessor("ants", mllm="hf:Qwen/Qwen2-VL-2B-Instruct")
    assert pp.label_suffix() == "[hf:Qwen/Qwen2-VL-2B-Instruct]"
    assert pp.describe()["mllm"]["spec"] == "hf:Qwen/Qwen2-VL-2B-Instruct"
