"""The falsification test (openood_immuno.experiments.falsification and ``openood-immuno falsify``):
hand-made statistics, the synthetic world of test_immuno_synthetic (training really varies with
the seed), and a reduced command-line run on the minibench."""
import csv
import math

import pytest
import torch
import torch.nn.functional as F

from openood_immuno.data.features import FeatureSet
from openood_immuno.experiments.falsification import (DEFAULT_VARIANTS, FalsificationData, FalsificationResult,
                                                      Variant, check_variants, max_softmax,
                                                      nearest_antibody_cosine, run_falsification,
                                                      variant_overrides)
from openood_immuno.experiments.falsification_verdict import summarize, verdicts
from openood_immuno.experiments.variants import NO_ANTIBODIES, REFERENCE
from openood_immuno.experiments.falsification_report import falsification_markdown, write_falsification
from test_immuno_synthetic import make_world


def _result(values: dict[str, list[dict]]) -> FalsificationResult:
    variants = [Variant(label, "immuno", {}, "") for label in values]
    seeds = list(range(len(next(iter(values.values())))))
    return FalsificationResult(variants, seeds, {l: dict(enumerate(rows)) for l, rows in values.items()})


def test_summary_is_paired_mean_and_sample_std_over_seeds():
    ref = [{"ACC": 90.0, "AUROC_near": 80.0, "msp_id": 0.5, "msp_ood/a": 0.3},
           {"ACC": 92.0, "AUROC_near": 84.0, "msp_id": 0.5, "msp_ood/a": 0.3},
           {"ACC": 94.0, "AUROC_near": 82.0, "msp_id": 0.5, "msp_ood/a": 0.3}]
    off = [{**r, "AUROC_near": r["AUROC_near"] - d, "msp_ood/a": 0.4} for r, d in zip(ref, (5, 6, 7))]
    result = _result({REFERENCE: ref, NO_ANTIBODIES: off})
    s = summarize(result)
    assert s["value"][REFERENCE]["ACC"] == pytest.approx((92.0, 2.0))           # ddof = 1
    assert s["delta"][NO_ANTIBODIES]["AUROC_near"] == pytest.approx((-6.0, 1.0))  # paired per seed
    assert s["delta"][NO_ANTIBODIES]["ACC"] == (0.0, 0.0)
    assert REFERENCE not in s["delta"]
    answers = {v.metric: v.answer for v in verdicts(result, min_seeds=3)}
    # t(0.975, 2) = 4.30: |-6| > 4.30 * 1 / sqrt(3) -> significant
    assert answers["AUROC_near"] == "yes"
    assert answers["msp_ood (mean)"].startswith("yes")
    assert answers["ACC"] == "no"


def test_verdict_says_falsified_when_antibodies_do_not_help_or_cost_accuracy():
    ref = [{"ACC": 90.0 + i, "AUROC_near": 80.0 + i, "msp_id": 0.5, "msp_ood/a": 0.3} for i in range(4)]
    off = [{**r, "ACC": r["ACC"] + 3.0 + 0.1 * i, "AUROC_near": r["AUROC_near"] + 0.5}
           for i, r in enumerate(ref)]
    answers = {v.metric: v.answer for v in verdicts(_result({REFERENCE: ref, NO_ANTIBODIES: off}),
                                                     min_seeds=4)}
    assert answers["AUROC_near"] == "no: falsified on this run"
    assert answers["ACC"] == "yes: falsified on this run"
    one_seed = _result({REFERENCE: ref[:1], NO_ANTIBODIES: [{**ref[0], "AUROC_near": 70.0}]})
    assert verdicts(one_seed, min_seeds=1)[0].answer == "inconclusive (not significant)"


def test_fewer_than_five_seeds_give_no_verdict_and_five_give_one():
    """The review's minimum: a verdict needs >= 5 training seeds; fewer measure but say why not."""
    from openood_immuno.experiments.falsification_verdict import MIN_VERDICT_SEEDS, overall_verdict

    assert MIN_VERDICT_SEEDS == 5
    ref = [{"ACC": 90.0 + i, "AUROC_near": 80.0 + i, "msp_id": 0.5, "msp_ood/a": 0.3} for i in range(5)]
    off = [{**r, "AUROC_near": r["AUROC_near"] - 5 - 0.1 * i, "msp_ood/a": 0.4} for i, r in enumerate(ref)]
    four = _result({REFERENCE: ref[:4], NO_ANTIBODIES: off[:4]})
    assert all(v.answer == "no verdict: 4 training seeds, a verdict needs at least 5" for v in verdicts(four))
    assert overall_verdict(four).startswith("no verdict: 4 training seeds")
    five = _result({REFERENCE: ref, NO_ANTIBODIES: off})
    assert {v.metric: v.answer for v in verdicts(five)}["AUROC_near"] == "yes"
    assert overall_verdict(five) == "supported"
    md = falsification_markdown(four)
    assert "**Verdict on the antibody claim: no verdict: 4 training seeds" in md
    assert "**Confidence criterion**" in md


def test_nearest_antibody_cosine_and_max_softmax_on_a_hand_made_example():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ab = F.normalize(torch.tensor([[1.0, 1.0], [1.0, -0.2]]), dim=1)
    expected = torch.tensor([max(ab[0, 0], ab[1, 0]), max(ab[0, 1], ab[1, 1])])
    assert torch.allclose(nearest_antibody_cosine(x, ab, chunk=1), expected)
    protos = torch.eye(2)
    e = math.e
    assert torch.allclose(max_softmax(x, protos, 1.0), torch.full((2,), e / (e + 1)))
    assert torch.allclose(max_softmax(x, protos, 0.5), torch.full((2,), e ** 2 / (e ** 2 + 1)))


def test_variants_and_overrides_are_checked_before_any_work():
    with pytest.raises(ValueError, match="must come first"):
        check_variants(DEFAULT_VARIANTS[1:], {})
    with pytest.raises(ValueError, match=r"--pp-arg \['\*.epochz'\]: epochz is not a parameter of any variant"):
        check_variants(DEFAULT_VARIANTS, {"*": {"epochz": 3}})
    with pytest.raises(ValueError, match="variant 'immuno': postprocessor 'immuno': immuno.epochs"):
        check_variants(DEFAULT_VARIANTS, {"*": {"epochs": 0}})
    with pytest.raises(ValueError, match=r"variant 'mcm': .*unknown parameter\(s\) \['epochs'\]"):
        check_variants(DEFAULT_VARIANTS, {"mcm": {"epochs": 3}})      # named: the key must be its own
    with pytest.raises(ValueError, match=r"--pp-arg names \['nope'\]: not among the variants run"):
        check_variants(DEFAULT_VARIANTS, {"nope": {"epochs": 3}})
    with pytest.raises(ValueError, match=r"\['\*.seed'\]: the training seeds of the test are --seeds"):
        check_variants(DEFAULT_VARIANTS, {"*": {"seed": 3}})


def test_pp_args_reach_the_named_variant_or_every_variant_that_has_the_key():
    from openood_immuno.postprocessors.registry import resolved_params

    pp_args = {"*": {"epochs": 3, "T": 2.0}, "immuno_no_antibodies": {"epochs": 4}, "mcm": {"T": 0.5}}
    check_variants(DEFAULT_VARIANTS, pp_args)
    got = {v.label: variant_overrides(v, resolved_params(v.postprocessor)[0], 7, pp_args)
           for v in DEFAULT_VARIANTS}
    assert got["immuno"] == {"epochs": 3, "seed": 7}
    assert got["immuno_no_antibodies"] == {"beta": 0.0, "lambda": 0.0, "epochs": 4, "seed": 7}  # named wins
    assert got["immuno_zeroshot"] == {"seed": 7}                       # has neither epochs nor T
    assert got["mcm"] == {"T": 0.5}                                    # named over *; no seed


def _synthetic_data(tmp_path):
    net, bank, id_features, test, ood = make_world()
    half = len(ood) // 2
    sets = {"near_a": FeatureSet("near_a", ood.features[:half], ood.labels[:half]),
            "far_b": FeatureSet("far_b", ood.features[half:], ood.labels[half:])}
    return (FalsificationData(net, id_features, test, sets, ["near_a"], ["far_b"]),
            str(bank.save(tmp_path / "bank.json")))


def test_training_seed_varies_training_only_where_there_is_training(tmp_path):
    data, bank = _synthetic_data(tmp_path)
    result = run_falsification(data, [0, 1], pp_args={"*": {"antibody_bank": bank, "epochs": 3}})
    s = summarize(result)["value"]
    # few-shot draw (16 of 32 per class), initialisation and batch order differ by seed
    for label in (REFERENCE, NO_ANTIBODIES):
        assert s[label]["train_push_after"][1] > 0 and s[label]["abcos_id_after"][1] > 0
    # a bank file and no training: nothing differs by seed
    for label in ("immuno_zeroshot", "mcm"):
        assert all(std == 0 for mean, std in s[label].values() if not math.isnan(mean)), label
    # without an adapter the features are not moved; the antibody set is the full method's
    assert s["mcm"]["abcos_id_after"] == s["mcm"]["abcos_id_before"] == s[REFERENCE]["abcos_id_before"]
    assert math.isnan(s["mcm"]["train_push_after"][0])
    # the world is built for the antibodies: the full method beats MCM by far
    assert s[REFERENCE]["AUROC_near"][0] > s["mcm"]["AUROC_near"][0] + 15
    paths = write_falsification(result, tmp_path / "out")
    assert [p.name for p in paths] == ["falsification.md", "falsification.csv", "falsification.png"]
    rows = list(csv.DictReader(open(paths[1])))
    assert [(r["variant"], r["statistic"]) for r in rows][:2] == [(REFERENCE, "value")] * 2
    assert {r["statistic"] for r in rows} == {"value", "mean", "std", "delta_mean", "delta_std"}
    assert float(next(r for r in rows if r["variant"] == "mcm" and r["statistic"] == "delta_mean")
                 ["AUROC_near"]) < -15
    text = paths[0].read_text()
    assert "## Verdict on this run" in text and "conf_ood/near_a" in text
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_minibench(minibench, tmp_path_factory):
    """The minibench with every list cut to its first lines (the images are linked, not copied)."""
    root = tmp_path_factory.mktemp("small_minibench")
    for folder in ("images_largescale", "images_classic"):
        (root / folder).symlink_to(minibench / folder, target_is_directory=True)
    lists = root / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True)
    for path in (minibench / "benchmark_imglist" / "imagenet").glob("*.txt"):
        keep = {"train_imagenet.txt": 60, "val_imagenet.txt": 20}.get(path.name, 30)
        (lists / path.name).write_text("".join(path.read_text().splitlines(keepends=True)[:keep]))
    return root


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory):
    """Two antibody texts per ImageNet class in a bank file (the WordNet bank takes ~20 s to
    build per seed; the falsification command is what is tested here)."""
    from openood_immuno.data.classnames import resolve_class_names
    from openood_immuno.methods.immuno.antibodies import Antibody, AntibodyBank

    names = resolve_class_names("imagenet")
    bank = AntibodyBank(names, {"generator": "test", "model": "-", "prompts": {}, "seed": 0})
    for name in dict.fromkeys(names):
        bank.add_class(name, [Antibody(f"something like a {name}", "near_ood", "test"),
                              Antibody(f"a {name} made of glass", "contextual", "test")], {})
    return str(bank.save(tmp_path_factory.mktemp("bank") / "bank.json"))


def test_falsify_command_on_minibench(small_minibench, small_bank, tmp_path, capsys):
    from openood_immuno.cli import run

    out = tmp_path / "falsify"
    rc = run(["falsify", "--data-root", str(small_minibench), "--model", "ImmunoTiny-ViT", "--pretrained",
              "none", "--device", "cpu", "--num-workers", "0", "--seeds", "0,1", "--pp-arg", "*.epochs=2",
              "--pp-arg", f"*.antibody_bank={small_bank}", "--set", "delta_low=-1", "--no-progress",
              "--output-dir", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["falsification.csv", "falsification.md",
                                                     "falsification.png"]
    rows = {(r["variant"], r["statistic"]): r for r in csv.DictReader(open(out / "falsification.csv"))}
    for label in (REFERENCE, NO_ANTIBODIES):  # trained: differs by seed
        assert float(rows[label, "std"]["train_push_after"]) > 0
    for label in ("immuno_zeroshot", "mcm"):  # no training, a bank file: nothing differs by seed
        assert float(rows[label, "std"]["AUROC_near"]) == 0
    text = (out / "falsification.md").read_text()
    assert "--seeds 0,1" in text
    # two seeds: measured, but no verdict; the verdict line names bank and regime
    assert "**Verdict on the antibody claim: no verdict: 2 training seeds, a verdict needs at least 5**" in text
    assert "bank test (sha256 " in text and "regime 16-shot x 2 epochs, fp32" in text
    assert "msp_near" in text  # the review's confidence criterion beside AUROC
    assert "verdict: no verdict: 2 training seeds" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0,0"], "repeats a seed"),
    (["--seeds", "a"], "is not a non-negative integer"),
    (["--variants", "immuno,nope"], "--variants: unknown variant 'nope'"),
    (["--variants", "mcm,immuno"], "immuno first"),
    (["--pp-arg", "*.epochz=2"], "epochz is not a parameter of any variant"),
    (["--pp-arg", "immuno.epochz=2"], "variant 'immuno': postprocessor 'immuno': unknown parameter(s) ['epochz']"),
    (["--pp-arg", "nope.epochs=2"], "not among the variants run here"),
    (["--variants", "immuno,mcm", "--pp-arg", "immuno_zeroshot.lambda=2"], "not among the variants run here"),
    (["--pp-arg", "epochs=2"], "--pp-arg expects NAME.KEY=VALUE"),
    (["--set", "epochz=2"], "epochz is not a parameter of any variant"),   # the old spelling: *.KEY
    (["--set", "epochs"], "--pp-arg expects NAME.KEY=VALUE"),
    (["--bank", "/nonexistent/bank.json"], "--bank '/nonexistent/bank.json': no such file"),
    (["--regime", "paper", "--pp-arg", "*.epochs=3"], "--pp-arg *.epochs contradicts --regime/--bank"),
    (["--regime", "paper", "--set", "epochs=3"], "--pp-arg *.epochs contradicts --regime/--bank"),
    (["--near-ood", "imagenet_o"], "--near-ood 'imagenet_o': name OOD sets of"),
    (["--extra-ood", "imagenet_o"], "--extra-ood expects NAME=LIST"),
])
def test_falsify_command_rejects_bad_input_in_one_line(minibench, tmp_path, capsys, argv, message):
    from openood_immuno.cli import run

    rc = run(["falsify", "--data-root", str(minibench), "--model", "ImmunoTiny-ViT", "--pretrained", "none",
              "--output-dir", str(tmp_path), *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    if "--set" in argv:   # one deprecation line first
        assert lines.pop(0).startswith("openood-immuno: warning: --set KEY=VALUE is deprecated")
    assert rc == 2 and len(lines) == 1 and message in lines[0], lines
    assert not any(tmp_path.iterdir())


def test_deprecated_set_is_pp_arg_for_every_variant_with_one_warning_line(capsys):
    from openood_immuno.cli.args import parse_pp_args, set_as_pp_args

    items = set_as_pp_args(["epochs=3", "T=2"]) + ["immuno.epochs=4"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--set KEY=VALUE is deprecated" in err and "--pp-arg '*.KEY=VALUE'" in err
    assert parse_pp_args(items, ["immuno", "mcm"], every=True, what="variants") == {
        "*": {"epochs": 3, "T": 2}, "immuno": {"epochs": 4}}
    assert set_as_pp_args([]) == [] and capsys.readouterr().err == ""


def test_pp_arg_star_only_where_the_command_allows_it():
    from openood_immuno.cli.args import UsageError, parse_pp_args

    with pytest.raises(UsageError, match=r"names '\*', which is not among the postprocessors run here \['mcm'\]"):
        parse_pp_args(["*.T=2"], ["mcm"])                                 # eval, vaccinate: no *
    with pytest.raises(UsageError, match=r"not among the variants run here \['immuno'\], or \* for every one"):
        parse_pp_args(["imuno.epochs=2"], ["immuno"], every=True, what="variants")


def test_falsify_command_names_a_missing_list(tmp_path, capsys):
    from openood_immuno.cli import run

    rc = run(["falsify", "--data-root", str(tmp_path), "--model", "ImmunoTiny-ViT", "--pretrained", "none",
              "--output-dir", str(tmp_path / "out")])
    assert rc == 2 and "has no benchmark_imglist/ folder" in capsys.readouterr().err


def test_command_lists_the_library_variants():
    from openood_immuno.cli.falsify import VARIANTS

    assert list(VARIANTS) == [v.label for v in DEFAULT_VARIANTS]


def test_falsify_regime_paper_and_imagenet_o_as_near_ood(small_minibench, small_bank, tmp_path, capsys):
    """--regime paper (all shots, 10 epochs) and an extra list as the near-OOD group (ImageNet-O's
    place; here a stand-in list), with --bank: named in the verdict line."""
    from openood_immuno.cli import run

    lists = small_minibench / "benchmark_imglist" / "imagenet"
    (lists / "test_imagenet_o.txt").write_text((lists / "test_ninco.txt").read_text())
    out = tmp_path / "falsify"
    rc = run(["falsify", "--data-root", str(small_minibench), "--model", "ImmunoTiny-ViT", "--pretrained",
              "none", "--device", "cpu", "--num-workers", "0", "--seeds", "0", "--regime", "paper",
              "--bank", small_bank, "--extra-ood", "imagenet_o=benchmark_imglist/imagenet/test_imagenet_o.txt",
              "--near-ood", "imagenet_o", "--variants", "immuno,immuno_no_antibodies",
              "--set", "delta_low=-1", "--no-progress", "--output-dir", str(out)])
    assert rc == 0
    text = (out / "falsification.md").read_text()
    assert "regime all shots x 10 epochs, fp32 (--regime paper); near-OOD sets imagenet_o" in text
    assert "--regime paper --bank" in text
