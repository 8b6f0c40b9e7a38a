"""The one list-answer parser (every accepted shape) and the ANTS description parser."""
import pytest

from openood_immuno.llm.parsing import parse_description, parse_list


@pytest.mark.parametrize("shape, answer, items", [
    ("numbered 1.", "1. carp\n2. koi\n3. orfe", ["carp", "koi", "orfe"]),
    ("numbered 1) and (1)", "1) carp\n(2) koi\n3] orfe", ["carp", "koi", "orfe"]),
    ("numbered 1: and 1-", "1: carp\n2- koi\n3 - orfe", ["carp", "koi", "orfe"]),
    ("numbered without space", "1.carp\n2.koi", ["carp", "koi"]),
    ("lettered", "a) carp\nb. koi", ["carp", "koi"]),
    ("bulleted", "- carp\n* koi\n+ orfe\n\u2022 chub\n\u00b7 dace\n\u2013 rudd", ["carp", "koi", "orfe", "chub", "dace", "rudd"]),
    ("preamble ignored", "Here are some look-alikes:\n- carp\n* koi", ["carp", "koi"]),
    ("preamble without colon ignored", "Sure!\n\n1.carp: a fish\n2. \"koi\".", ["carp", "koi"]),
    ("markdown emphasis", "1. **Dace**\n2. _koi_\n3. `orfe`", ["Dace", "koi", "orfe"]),
    ("explanations cut", "1. Chub - a fish\n2. carp: a fish\n3. rudd (freshwater)\n4. ide (golden", ["Chub", "carp", "rudd", "ide"]),
    ("comma separated", "carp, koi; orfe and chub", ["carp", "koi", "orfe", "chub"]),
    ("answer prefix", "Answer: puma, ocelot, serval", ["puma", "ocelot", "serval"]),
    ("one per line", "carp\nkoi\norfe", ["carp", "koi", "orfe"]),
    ("code fence", "```\n1. carp\n2. koi\n```", ["carp", "koi"]),
    ("JSON list", '["carp", "koi", "orfe"]', ["carp", "koi", "orfe"]),
    ("JSON list in a fence after a preamble", 'Here:\n```json\n["carp", "koi"]\n```', ["carp", "koi"]),
    ("case-insensitive duplicates dropped", "1. Tiger\n2. lynx\n3. tiger", ["Tiger", "lynx"]),
    ("items without letters dropped", "1. 123\n2. !!!\n3. koi", ["koi"]),
    ("a sentence is not a list", "no list here", []),
    ("empty", "", []),
    ("none", None, []),
])
def test_parse_list_shape(shape, answer, items):
    assert parse_list(answer) == items, shape


def test_parse_list_excludes_the_class_and_limits():
    # moved from test_ants_components.py::test_parse_similar_names (VSNL names)
    text = "Sure! Here are five:\n1. Tiger (stripes)\n2) lynx - spotted cat\n- Leopard\n3. tabby cat\n4. Tiger\n5: cheetah"
    assert parse_list(text, "tabby cat") == ["Tiger", "lynx", "Leopard", "cheetah"]
    assert parse_list("puma, ocelot, serval", "cat") == ["puma", "ocelot", "serval"]
    assert parse_list("no list here", "cat") == []
    assert len(parse_list("\n".join(f"{i}. name{i}" for i in range(1, 9)), limit=5)) == 5


def test_parse_description():
    # moved from test_ants_components.py
    assert parse_description("Answer: A goldfish swimming in a bowl.\nmore", "goldfish") == \
        "A swimming in a bowl"
    assert parse_description('  "Snowy mountain peak at dawn."  ') == "Snowy mountain peak at dawn"
    assert parse_description("ASSISTANT: 12345 !!") is None
    assert parse_description("") is None and parse_description(None) is None
