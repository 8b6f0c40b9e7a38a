"""NegLabel: corpus, mining (exactly the lowest quantile scores), label files, cache, postprocessor, CLI."""
import hashlib

import numpy as np
import pytest
import torch

from openood_immuno import build_postprocessor
from openood_immuno.methods.neglabel import (export_labels, import_labels, limited_corpus,
                                     mine_negative_labels, negative_labels, quantile_scores,
                                     split_budget, wordnet_corpus, fraction_budget)
from openood_immuno.methods.neglabel import select as select_mod
from openood_immuno.methods.neglabel.mining import NegativeLabels


class FakeNet:
    """encode_text: a fixed random unit vector per (template, word); records the templates used."""

    identity = "fake"

    def __init__(self, class_names, dim=16):
        self.class_names, self.dim, self.calls = list(class_names), dim, []

    def encode_text(self, texts, templates=None):
        self.calls.append((tuple(templates), len(texts)))
        rows = []
        for t in texts:
            seed = int(hashlib.sha256((repr(templates) + t).encode()).hexdigest()[:8], 16)
            rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def test_mining_keeps_exactly_the_lowest_quantile_scores():
    net = FakeNet([f"class{i}" for i in range(40)])
    nouns = [f"noun{i}" for i in range(300)]
    adjectives = [f"adj{i}" for i in range(100)]
    labels = mine_negative_labels(net, nouns, adjectives, n_labels=80, quantile=0.95,
                                  id_template="the nice {}", noun_template="the nice {}",
                                  adj_template="This is a {} photo")
    assert (len(labels.nouns), len(labels.adjectives)) == (60, 20)   # split by pool size 3:1
    id_feats = net.encode_text(net.class_names, ("the nice {}",)).numpy()
    for words, template, got in ((nouns, "the nice {}", labels.nouns),
                                 (adjectives, "This is a {} photo", labels.adjectives)):
        sims = net.encode_text(words, (template,)).numpy() @ id_feats.T
        d = np.quantile(sims, 0.95, axis=1)      # numpy's linear interpolation, per candidate
        expected = [words[i] for i in np.argsort(d, kind="stable")[:len(got)]]
        assert got == expected
        assert max(d[words.index(w)] for w in got) <= min(
            d[i] for i, w in enumerate(words) if w not in set(got))
    assert ("This is a {} photo",) in [c[0] for c in net.calls]


def test_fraction_rule_keeps_int_fraction_of_each_pool_a_superset_of_the_count_rule():
    """The NegLabel code's rule (neg_topk = 0.15): int(0.15 * pool) of each pool, the same
    ascending d_j order, so its list extends the count rule's pool by pool."""
    net = FakeNet([f"class{i}" for i in range(40)])
    nouns = [f"noun{i}" for i in range(301)]
    adjectives = [f"adj{i}" for i in range(99)]
    by_count = mine_negative_labels(net, nouns, adjectives, n_labels=40)
    by_fraction = mine_negative_labels(net, nouns, adjectives, n_labels=40, fraction=0.15)
    assert (len(by_count.nouns), len(by_count.adjectives)) == (30, 10)
    assert (len(by_fraction.nouns), len(by_fraction.adjectives)) == (45, 14)   # int(45.15), int(14.85)
    assert by_fraction.nouns[:30] == by_count.nouns and by_fraction.adjectives[:10] == by_count.adjectives
    # this project's WordNet pools, and the pools behind the authors' dump (8,578 + 1,921)
    assert fraction_budget(0.15, 59_123, 12_354) == (8868, 1853)
    assert fraction_budget(0.15, 57_187, 12_807) == (8578, 1921)
    with pytest.raises(ValueError, match="neg_fraction"):
        fraction_budget(0.001, 300, 100)


def test_quantile_scores_match_torch_quantile_rowwise():
    cand, ids = torch.randn(2500, 8), torch.randn(30, 8)
    got = quantile_scores(cand, ids, 0.95)
    assert torch.allclose(got, torch.stack([torch.quantile(c @ ids.T, 0.95) for c in cand]), atol=1e-6)
    with pytest.raises(ValueError):
        quantile_scores(cand, ids, 1.5)


def test_split_budget():
    assert split_budget(10_000, 59_123, 12_354) == (8272, 1728)
    with pytest.raises(ValueError, match="corpus_limit"):
        split_budget(500, 300, 100)


def test_wordnet_corpus_matches_the_neglabel_files():
    nouns, adjectives = wordnet_corpus()
    assert (len(nouns), len(adjectives)) == (59_123, 12_354)
    assert len(set(nouns) | set(adjectives)) == len(nouns) + len(adjectives)
    assert "entity" in nouns and "able" in adjectives and "living thing" in nouns
    with_animals, _ = wordnet_corpus(())
    assert len(with_animals) > len(nouns)
    small_n, small_a = limited_corpus(nouns, adjectives, 1000)
    assert len(small_n) + len(small_a) == 1000 and len(small_n) == round(1000 * 59_123 / 71_477)


def test_missing_wordnet_names_the_fix(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(LookupError, match="nltk.downloader wordnet"):
        wordnet_corpus(("noun.person",))


def test_label_file_roundtrip_and_errors(tmp_path):
    labels = NegativeLabels(["dust storm", "quarry"], ["tongan"], {"model": "x", "quantile": 0.95})
    path = export_labels(labels, tmp_path / "neg.txt")
    back = import_labels(path)
    assert (back.nouns, back.adjectives) == (labels.nouns, labels.adjectives)
    assert back.meta == {"model": "x", "quantile": "0.95"}
    bad = tmp_path / "bad.txt"
    bad.write_text("noun\tok\nverb\tnope\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        import_labels(bad)
    with pytest.raises(FileNotFoundError, match="neglabels --out"):
        import_labels(tmp_path / "missing.txt")


def test_mined_list_is_cached_per_parameters(tiny_net, monkeypatch):
    first = negative_labels(tiny_net, n_labels=120, corpus_limit=600)
    assert len(first) == 120

    def refuse(*args, **kwargs):
        raise AssertionError("mined again although cached")

    monkeypatch.setattr(select_mod, "mine_negative_labels", refuse)
    again = negative_labels(tiny_net, n_labels=120, corpus_limit=600)
    assert (again.nouns, again.adjectives) == (first.nouns, first.adjectives)
    assert again.meta["model"] == tiny_net.identity
    with pytest.raises(AssertionError, match="mined again"):
        negative_labels(tiny_net, n_labels=120, corpus_limit=600, quantile=0.9)


def test_neg_fraction_reaches_mining_and_keys_the_cache(tiny_net):
    nouns, adjectives = limited_corpus(*wordnet_corpus(), 600)
    pp = build_postprocessor("neglabel", neg_fraction=0.15, corpus_limit=600, n_groups=12).fit(tiny_net, {})
    labels = pp.scorer.labels
    assert (len(labels.nouns), len(labels.adjectives)) == (int(0.15 * len(nouns)), int(0.15 * len(adjectives)))
    assert str(labels.meta["fraction"]) == "0.15" and pp.scorer.neg_text.shape[0] == len(labels)
    by_count = negative_labels(tiny_net, n_labels=len(labels) - 5, corpus_limit=600)
    assert set(by_count.nouns) <= set(labels.nouns) and len(by_count) == len(labels) - 5


def test_neglabel_postprocessor_and_file_import(tiny_net, tmp_path):
    pp = build_postprocessor("neglabel", n_neg_labels=120, corpus_limit=600, n_groups=12).fit(tiny_net, {})
    feats = tiny_net.encode_image(torch.randn(5, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    pred, conf = pp.score_features(feats)
    assert pred.shape == (5,) and bool(((conf > 0) & (conf < 1)).all())
    assert pp.scorer.neg_text.shape == (120, tiny_net.embed_dim)
    path = export_labels(pp.scorer.labels, tmp_path / "neg.txt")
    imported = build_postprocessor("neglabel", neg_labels_file=str(path), n_groups=12).fit(tiny_net, {})
    assert torch.equal(imported.score_features(feats)[1], conf)
    pp.args_dict = {"n_groups": [6, 24]}
    pp.set_hyperparam([24])
    assert not torch.equal(pp.score_features(feats)[1], conf)


def test_cli_exports_and_checks(tmp_path, tiny_net, capsys):
    from openood_immuno.cli import build_parser

    parser = build_parser()
    out = tmp_path / "cli.txt"
    args = parser.parse_args(["neglabels", "--model", "ImmunoTiny-ViT", "--pretrained", "none",
                              "--device", "cpu", "--out", str(out), "--n-neg-labels", "120",
                              "--corpus-limit", "600"])
    with pytest.warns(UserWarning, match="RANDOM"):
        assert args.func(args) == 0
    assert len(import_labels(out)) == 120
    args = parser.parse_args(["neglabels", "--check", str(out)])
    assert args.func(args) == 0
    assert "nouns +" in capsys.readouterr().out
