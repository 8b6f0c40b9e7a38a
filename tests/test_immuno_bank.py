"""Antibody bank format, list parsing, the WordNet generator and the resumable driver."""
import json

import pytest

from openood_immuno.data.classnames import imagenet_classes
from openood_immuno.methods.immuno.antibodies import Antibody, AntibodyBank, BankError
from openood_immuno.methods.immuno.bank_quality import bank_quality, quality_lines
from openood_immuno.methods.immuno.generation import AntibodyGenerator, ClassInfo, Generated
from openood_immuno.methods.immuno.generators import build_bank, id_classes, make_generator
from openood_immuno.methods.immuno.screening import screen_candidates
from openood_immuno.methods.immuno.wordnet_gen import (WordNetGenerator, WuPalmer, first_unused, load_wordnet,
                                               random_wordnet_words)
from openood_immuno.llm.parsing import parse_list

PROV = {"generator": "test", "model": "none", "prompts": {}, "seed": 0, "params": {}}
WANT = {"near_ood": 2, "contextual": 1}


@pytest.fixture(scope="module")
def wordnet_imagenet():
    gen = WordNetGenerator(n_near=10, n_contextual=5)
    gen.prepare(id_classes("imagenet"))
    return gen


def test_bank_roundtrip_dedup_and_shortfall(tmp_path):
    bank = AntibodyBank(["tench", "goldfish"], PROV)
    kept = bank.add_class("tench", [Antibody("carp", "near_ood", "x"), Antibody(" Carp.", "near_ood", "y"),
                                    Antibody("Goldfish", "near_ood", "z"),  # an ID class: dropped
                                    Antibody("a melting tench", "contextual", "p")], WANT)
    assert [a.text for a in kept] == ["carp", "a melting tench"]
    assert bank.short["tench"]["near_ood"] == 1 and bank.short["tench"]["wanted"] == WANT
    bank.add_class("goldfish", [Antibody("koi", "near_ood", "x"), Antibody("orfe", "near_ood", "x"),
                                Antibody("a robotic goldfish", "contextual", "p")], WANT, ["note"])
    assert "goldfish" not in bank.short
    path = bank.save(tmp_path / "bank.json")
    again = AntibodyBank.load(path)
    assert again.counts() == bank.counts() and again.digest() == bank.digest()
    assert again.provenance["updated"] and again.short == bank.short
    again.require_complete(["tench", "goldfish"])


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "something else"}), "not an openood-immuno antibody bank"),
    (json.dumps({"format": "openood-immuno/antibody-bank", "format_version": 9}), "format_version 9"),
    (json.dumps({"format": "openood-immuno/antibody-bank", "format_version": 1, "class_names": [],
                 "provenance": PROV, "classes": {}}), "non-empty list"),
    (json.dumps({"format": "openood-immuno/antibody-bank", "format_version": 1, "class_names": ["a"],
                 "provenance": PROV, "classes": {"a": [{"text": "b", "kind": "weird", "source": ""}]}}),
     "antibody 0 of class 'a'.*kind"),
    (json.dumps({"format": "openood-immuno/antibody-bank", "format_version": 1, "class_names": ["a"],
                 "provenance": PROV, "classes": {"a": [{"text": "b"}]}}), "must be an object with"),
    (json.dumps({"format": "openood-immuno/antibody-bank", "format_version": 1, "class_names": ["a"],
                 "provenance": PROV, "classes": {"zz": []}}), "'zz' in 'classes' is not in"),
])
def test_bank_load_errors_are_clear(tmp_path, content, message):
    path = tmp_path / "bank.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BankError, match=message):
        AntibodyBank.load(path)


def test_bank_completeness_errors():
    bank = AntibodyBank(["tench", "goldfish"], PROV)
    bank.add_class("tench", [], WANT)
    with pytest.raises(BankError, match="incomplete.*resume"):
        bank.require_complete(["tench", "goldfish"])
    bank.add_class("goldfish", [], WANT)
    with pytest.raises(BankError, match="holds no antibody"):
        bank.require_complete(["tench", "goldfish"])
    with pytest.raises(BankError, match="another class set.*1 of the 2"):
        bank.require_complete(["tench", "magpie"])


def test_resuming_needs_same_classes_and_settings(tmp_path):
    path = tmp_path / "bank.json"
    AntibodyBank(["a", "b"], PROV).save(path)
    assert AntibodyBank.open_for_generation(path, ["a", "b"], PROV).class_names == ["a", "b"]
    with pytest.raises(BankError, match="another class set"):
        AntibodyBank.open_for_generation(path, ["a"], PROV)
    with pytest.raises(BankError, match=r"other generator settings \(differing: \['seed'\]\)"):
        AntibodyBank.open_for_generation(path, ["a", "b"], {**PROV, "seed": 1})


@pytest.mark.parametrize("answer, items", [
    ("1. Carp\n2. Chub - a fish\n3) **Dace**\n(4) rudd (freshwater)", ["Carp", "Chub", "Dace", "rudd"]),
    ("Here are some look-alikes:\n- carp\n* koi\n\u2022 orfe\n", ["carp", "koi", "orfe"]),
    ("carp, koi; orfe and chub", ["carp", "koi", "orfe", "chub"]),
    ("Sure!\n\n1.carp: a fish\n2. \"koi\".", ["carp", "koi"]),
    ("", []),
    (None, []),
])
def test_parse_list_reads_common_answer_shapes(answer, items):
    assert parse_list(answer) == items


def test_screen_candidates_rejects_garbage_with_reasons():
    near, rejected = screen_candidates(
        ["carp", "golden tench", "tench", "@@##$$", "the the the the the", "x",
         "one two three four five six seven"], "tench", "near_ood")
    assert near == ["carp"]
    assert len(rejected) == 6 and any("contains the class" in r for r in rejected)
    ctx, rejected = screen_candidates(["a tench made of clouds", "a melting fish", "melting tenches"],
                                      "tench", "contextual")
    assert ctx == ["a tench made of clouds", "melting tenches"] and "does not mention" in rejected[0]


def test_wordnet_near_ood_excludes_self_hyponyms_and_id_classes(wordnet_imagenet):
    wn = load_wordnet()
    tench = ClassInfo("tench", "n01440764")
    out = wordnet_imagenet.generate(tench)
    near = [a.text for a in out.antibodies if a.kind == "near_ood"]
    ctx = [a.text for a in out.antibodies if a.kind == "contextual"]
    assert len(near) == 10 and len(ctx) == 5 and not out.problems
    assert "carp" in near and all(a.source.startswith("wordnet:tench.n.01->") for a in out.antibodies if a.kind == "near_ood")
    id_lemmas = {n.replace("_", " ").lower() for wnid, _ in imagenet_classes()
                 for n in wn.synset_from_pos_and_offset("n", int(wnid[1:])).lemma_names()}
    id_names = {n.lower() for _, n in imagenet_classes()}
    syn = wn.synset("tench.n.01")
    own = {n.replace("_", " ").lower() for s in [syn, *syn.closure(lambda s: s.hyponyms())]
           for n in s.lemma_names()}
    assert not {n.lower() for n in near} & (id_lemmas | id_names | own)
    assert all("tench" in c for c in ctx) and all(c.startswith(("a ", "an ")) for c in ctx)
    # a dog breed gets no ID breed and no hypernym of an ID breed (e.g. 'terrier', 'retriever')
    golden = wordnet_imagenet.generate(ClassInfo("Golden Retriever", "n02099601"))
    names = {a.text.lower() for a in golden.antibodies if a.kind == "near_ood"}
    assert names and not names & (id_names | id_lemmas | {"retriever", "terrier", "dog", "hound"})
    assert wordnet_imagenet.generate(tench).antibodies == out.antibodies  # deterministic


def test_wordnet_name_lookup_fallbacks_and_short_record(tmp_path):
    classes = id_classes(["tench", "zebra finch sculpture", "qwzxv"])
    gen = WordNetGenerator(n_near=3, n_contextual=2)
    bank = build_bank(gen, classes, tmp_path / "b.json", progress=False)
    tench = [a for a in bank.antibodies_for("tench") if a.kind == "near_ood"]
    assert len(tench) == 3 and all(a.source.endswith(":hop1") for a in tench)  # co-hyponyms (cyprinids)
    sculpture = [a for a in bank.antibodies_for("zebra finch sculpture") if a.kind == "near_ood"]
    assert sculpture and all(a.source.startswith("wordnet:sculpture.n.01->") for a in sculpture)
    assert bank.short["qwzxv"]["near_ood"] == 0 and bank.short["qwzxv"]["contextual"] == 2
    assert "not in WordNet" in bank.short["qwzxv"]["problems"][0]


class CountingGenerator(AntibodyGenerator):
    name = "counting"

    def __init__(self):
        super().__init__(1, 0)
        self.calls = []

    def provenance(self):
        return dict(PROV)

    def generate(self, cls):
        self.calls.append(cls.name)
        return Generated([Antibody(f"not {cls.name}", "near_ood", "test")])


def test_build_bank_resumes_and_merges_duplicate_names(tmp_path):
    out = tmp_path / "bank.json"
    classes = [ClassInfo("a"), ClassInfo("b"), ClassInfo("missile", "n1"), ClassInfo("missile", "n2")]
    gen = CountingGenerator()
    bank = build_bank(gen, classes, out, progress=False)
    assert gen.calls == ["a", "b", "missile", "missile"] and len(bank.antibodies_for("missile")) == 1
    data = json.loads(out.read_text())
    del data["classes"]["b"]
    out.write_text(json.dumps(data))  # as if interrupted before 'b'
    gen2 = CountingGenerator()
    bank2 = build_bank(gen2, classes, out, progress=False)
    assert gen2.calls == ["b"] and not bank2.missing()


def test_make_generator_rejects_unknown_specs():
    with pytest.raises(ValueError, match="unknown generator 'gpt'"):
        make_generator("gpt")
    with pytest.raises(ValueError, match="at least one antibody"):
        make_generator("wordnet", n_near=0, n_contextual=0)


def test_random_words_avoid_id_classes():
    classes = id_classes("imagenet")
    words = random_wordnet_words([3, 5], classes, seed=1)
    assert [len(w) for w in words] == [3, 5] and words == random_wordnet_words([3, 5], classes, seed=1)
    id_names = {n.lower() for _, n in imagenet_classes()}
    assert not {w.lower() for ws in words for w in ws} & id_names


def test_wu_palmer_matches_nltk():
    wn, wup = load_wordnet(), WuPalmer()
    for a, b in [("tiger.n.02", "liger.n.01"), ("tiger.n.02", "puppy.n.01"), ("tench.n.01", "carp.n.02"),
                 ("pizza.n.01", "viand.n.01"), ("dog.n.01", "cat.n.01")]:
        a, b = wn.synset(a), wn.synset(b)
        assert wup(a, b) == pytest.approx(a.wup_similarity(b))
    dog = wn.synset("dog.n.01")
    assert wup(dog, dog) == 1.0  # nltk: 0.93 (its depths follow the longest hypernym path)


def test_first_unused_changes_the_tail_least():
    ranked = [Antibody(t, "near_ood", "x") for t in "abcde"]
    used: set = set()
    picks = ["".join(a.text for a in first_unused(ranked, 3, used)) for _ in range(5)]
    assert picks == ["abc", "abd", "abe", "acd", "ace"]
    assert [a.text for a in first_unused(ranked[:2], 3, used)] == ["a", "b"]  # too few: all of them


@pytest.fixture(scope="module")
def sibling_bank(tmp_path_factory):
    """The WordNet bank of a hard ImageNet subset: every dog breed (118 siblings and cousins
    under dog.n.01) plus a few other classes (the full 1000-class figures are in the docs)."""
    wn = load_wordnet()
    dog = wn.synset("dog.n.01")
    dogs = [ClassInfo(name, wnid) for wnid, name in imagenet_classes()
            if dog in wn.synset_from_pos_and_offset("n", int(wnid[1:])).closure(lambda s: s.hypernyms())]
    others = [c for c in id_classes("imagenet") if c.name in
              {"tench", "goldfish", "tiger", "lion", "tabby cat", "lemon", "orange", "volcano", "pizza"}]
    classes = others + dogs
    gen = WordNetGenerator(n_near=10, n_contextual=1)
    bank = build_bank(gen, classes, tmp_path_factory.mktemp("bank") / "siblings.json", progress=False)
    return gen, classes, bank


def test_wordnet_sibling_lists_are_distinct_and_full(sibling_bank):
    _, classes, bank = sibling_bank
    assert len(classes) > 120
    q = bank_quality(bank)
    assert q["classes"] == len(classes) and q["distinct_share"] >= 0.95 and q["short_near"] == 0
    golden, labrador = ({a.text for a in bank.antibodies_for(n) if a.kind == "near_ood"}
                        for n in ("Golden Retriever", "Labrador Retriever"))
    assert golden != labrador and len(golden & labrador) >= 5  # siblings: similar, not identical
    tiger = [a.text for a in bank.antibodies_for("tiger") if a.kind == "near_ood"]
    assert {"liger", "tiglon"} <= set(tiger) and not {"puppy", "brood bitch", "cur"} & set(tiger)


def test_wordnet_ranks_by_similarity_and_never_names_an_id_class(sibling_bank):
    gen, classes, bank = sibling_bank
    wn, wup = load_wordnet(), WuPalmer()
    ids = {c: wn.synset_from_pos_and_offset("n", int(c.wnid[1:])) for c in classes}
    id_texts = {n.replace("_", " ").lower() for s in ids.values() for x in [s, *s.closure(lambda t: t.hyponyms())]
                for n in x.lemma_names()} | {c.name.lower() for c in classes}
    for cls in (c for c in classes if c.name in {"tench", "Golden Retriever", "pizza", "Beagle"}):
        own = ids[cls]
        ranked = [a for a in gen.ranked(cls, own) if not wn.synset(a.source.split("->")[1].split(":")[0])
                  .instance_hypernyms()]
        scores = []
        for a in ranked:
            cand = wn.synset(a.source.split("->")[1].split(":")[0])
            sim = wup(cand, own)
            other = max(wup(cand, s) for c, s in ids.items() if s != own)
            scores.append(sim - max(0.0, other - sim))
        assert len(scores) > 10 and scores == sorted(scores, reverse=True)
    near = {a.text.lower() for n in bank.classes for a in bank.antibodies_for(n) if a.kind == "near_ood"}
    assert near and not near & id_texts


def test_bank_quality_summary():
    prov = {**PROV, "params": {"n_near": 2}}
    bank = AntibodyBank(["tench", "goldfish", "tiger"], prov)
    src = "wordnet:tench.n.01->carp.n.02:hop1"
    bank.add_class("tench", [Antibody("carp", "near_ood", src), Antibody("chub", "near_ood", src.replace("carp.n.02", "chub.n.01")),
                             Antibody("a melting tench", "contextual", "p")], WANT)
    bank.add_class("goldfish", [Antibody("Chub", "near_ood", "wordnet:goldfish.n.01->chub.n.01:hop3"),
                                Antibody("carp ", "near_ood", "wordnet:goldfish.n.01->carp.n.02:hop3")], WANT)
    bank.add_class("tiger", [Antibody("liger", "near_ood", "llm")], WANT)
    q = bank_quality(bank, examples=["tiger", "absent"])
    assert q["distinct_near_lists"] == 2 and q["distinct_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert q["largest_shared"] == {"classes": 2, "names": ["tench", "goldfish"]}
    assert (q["short_near"], q["short_examples"], q["mean_near"]) == (1, ["tiger"], pytest.approx(5 / 3, abs=0.01))
    assert q["mean_hop"] == pytest.approx(2.0) and 0.8 < q["mean_wup"] < 1.0
    assert q["examples"] == {"tiger": ["liger"]}
    text = "\n".join(quality_lines(q))
    assert "2 distinct over 3 classes (66.7%)" in text and "1 classes (33.3%) short of 2" in text
    llm = AntibodyBank(["tiger"], PROV)
    llm.add_class("tiger", [Antibody("lion statue", "near_ood", "llm:hard_negatives")], {"near_ood": 3})
    q = bank_quality(llm)
    assert q["mean_wup"] is None and q["mean_hop"] is None and q["short_near"] == 1


# ---- round 2: bank checks on load (issue 12 item 5) ----------------------------------------------
def _bank_json(classes, names=("tench", "goldfish", "shark", "hen", "ostrich")):
    return {"format": "openood-immuno/antibody-bank", "format_version": 1, "class_names": list(names),
            "provenance": PROV, "classes": {n: [{"text": t, "kind": "near_ood", "source": "hand"}
                                                for t in ts] for n, ts in classes.items()}}


def test_id_class_names_are_dropped_on_load_with_one_info_line(tmp_path, caplog):
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(_bank_json({"tench": ["carp", "Goldfish", " shark. "],
                                           "goldfish": ["koi", "TENCH"]}, ("tench", "goldfish", "shark"))))
    with caplog.at_level("INFO", logger="openood_immuno.methods.immuno.antibodies"):
        bank = AntibodyBank.load(path)
    assert [a.text for a in bank.antibodies_for("tench")] == ["carp"]
    assert [a.text for a in bank.antibodies_for("goldfish")] == ["koi"]
    lines = [r.getMessage() for r in caplog.records if "equal to an ID class name" in r.getMessage()]
    assert len(lines) == 1 and "3 antibodies" in lines[0] and str(path) in lines[0]


def test_a_bank_covering_under_half_the_classes_is_refused_unless_allowed(tmp_path, caplog):
    from openood_immuno.methods.immuno.antibody_sources import load_bank
    from openood_immuno.methods.immuno.params import ImmunoZeroShotParams

    names = ["tench", "goldfish", "shark", "hen", "ostrich"]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(_bank_json({"tench": ["carp"], "goldfish": ["koi"], "shark": [],
                                           "hen": [], "ostrich": []})))
    with pytest.raises(BankError) as info:
        load_bank(ImmunoZeroShotParams(antibody_bank=str(path)), names)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "2 of the 5 ID classes (40.0%" in message
    assert "allow_partial_bank: true" in message
    with caplog.at_level("WARNING"):
        bank = load_bank(ImmunoZeroShotParams(antibody_bank=str(path), allow_partial_bank=True), names)
    assert len(bank) == 2 and "used anyway (allow_partial_bank: true)" in caplog.text
    half = AntibodyBank.from_json(_bank_json({"tench": ["carp"], "goldfish": ["koi"], "shark": [],
                                              "hen": []}, names[:4]))
    assert half.require_coverage(names[:4]) == 0.5          # exactly half: accepted
    assert ImmunoZeroShotParams().allow_partial_bank is False


def test_bank_and_label_files_name_a_directory_and_the_encoding(tmp_path):
    from openood_immuno.methods.neglabel.labelfile import import_labels

    with pytest.raises(BankError, match="is a directory, not a file"):
        AntibodyBank.load(tmp_path)
    with pytest.raises(ValueError, match="is a directory, not a file"):
        import_labels(tmp_path)
    text = json.dumps(_bank_json({"tench": ["carpé"]}, ("tench",)), ensure_ascii=False)
    utf16, latin1 = tmp_path / "utf16.json", tmp_path / "latin1.json"
    utf16.write_text(text, encoding="utf-16")
    latin1.write_text(text, encoding="latin-1")
    with pytest.raises(BankError, match=r"utf16.json' is UTF-16, not UTF-8: convert it with `iconv"):
        AntibodyBank.load(utf16)
    with pytest.raises(BankError, match=r"latin1.json', line 1: not UTF-8 \(byte 0xe9; Latin-1\?\)"):
        AntibodyBank.load(latin1)
    bom = tmp_path / "bom.json"
    bom.write_text(text, encoding="utf-8-sig")
    assert [a.text for a in AntibodyBank.load(bom).antibodies_for("tench")] == ["carpé"]
    labels16, labels1 = tmp_path / "labels16.txt", tmp_path / "labels1.txt"
    labels16.write_text("noun\tcafé\n", encoding="utf-16")
    labels1.write_text("noun\tcafé\n", encoding="latin-1")
    with pytest.raises(ValueError, match="negative label file .*is UTF-16"):
        import_labels(labels16)
    with pytest.raises(ValueError, match=r"negative label file .*line 1: not UTF-8 .*Latin-1"):
        import_labels(labels1)
