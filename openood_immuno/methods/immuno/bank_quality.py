"""How good an antibody bank's near-OOD look-alikes are, as one JSON-ready dict.

``bank_quality(bank)`` measures, over the bank's classes (a name listed twice counts once):

* ``distinct_near_lists`` / ``distinct_share``: how many different near-OOD lists (sets of
  normalised texts) the classes have; 1.0 means no two classes share the same list, so sibling
  classes (the dog breeds) are told apart by their antibodies;
* ``largest_shared``: the biggest group of classes with one identical list (size, a few names);
* ``short_near`` / ``short_share``: classes with fewer near-OOD antibodies than the generator
  was asked for (``provenance.params.n_near``, else the bank's ``short`` records);
* ``mean_hop``: the WordNet hop of the look-alikes (``...:hopK`` in their ``source``), when
  the generator records one;
* ``mean_wup``: the mean Wu-Palmer similarity of each look-alike synset to its class synset
  (both named in a ``wordnet:CLASS->CANDIDATE`` source), 1.0 = the class itself;
* ``examples``: the near-OOD lists of a few well-known classes (tiger, volcano, ...), so a
  drifting bank is visible at a glance.

The WordNet figures are ``None`` for banks whose sources name no synsets (LLM banks).
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

from .antibodies import AntibodyBank, normalise_text

EXAMPLE_CLASSES = ("tench", "lemon", "tiger", "volcano", "pizza", "Golden Retriever", "Beagle")
_HOP = re.compile(r":hop(\d+)$")
_PAIR = re.compile(r"^wordnet:([^>]+)->([^:]+)")


def _near_texts(bank: AntibodyBank, name: str) -> list[str]:
    return [a.text for a in bank.antibodies_for(name) if a.kind == "near_ood"]


def _n_near_wanted(bank: AntibodyBank) -> Optional[int]:
    n = (bank.provenance.get("params") or {}).get("n_near")
    return int(n) if n is not None else None


def bank_quality(bank: AntibodyBank, examples: Sequence[str] = EXAMPLE_CLASSES,
                 n_examples: int = 10) -> dict:
    """Quality summary of ``bank``'s near-OOD antibodies (see the module docstring)."""
    names = [n for n in dict.fromkeys(bank.class_names) if n in bank.classes]
    lists = {n: frozenset(normalise_text(t) for t in _near_texts(bank, n)) for n in names}
    groups: dict[frozenset, list[str]] = {}
    for n in names:
        groups.setdefault(lists[n], []).append(n)
    biggest = max(groups.values(), key=len) if groups else []
    wanted = _n_near_wanted(bank)
    if wanted is None:
        short = [n for n in names if n in bank.short
                 and bank.short[n]["near_ood"] < bank.short[n]["wanted"]["near_ood"]]
    else:
        short = [n for n in names if len(lists[n]) < wanted]
    hops, pairs = [], []
    for n in names:
        for ab in bank.antibodies_for(n):
            if ab.kind != "near_ood":
                continue
            hop, pair = _HOP.search(ab.source), _PAIR.match(ab.source)
            if hop:
                hops.append(int(hop.group(1)))
            if pair:
                pairs.append(pair.groups())
    count = max(len(names), 1)
    return {
        "classes": len(names),
        "distinct_near_lists": len(groups),
        "distinct_share": round(len(groups) / count, 4),
        "largest_shared": {"classes": len(biggest) if len(biggest) > 1 else 0,
                           "names": biggest[:5] if len(biggest) > 1 else []},
        "n_near_wanted": wanted,
        "short_near": len(short),
        "short_share": round(len(short) / count, 4),
        "short_examples": short[:5],
        "mean_near": round(sum(len(v) for v in lists.values()) / count, 2),
        "mean_hop": round(sum(hops) / len(hops), 3) if hops else None,
        "mean_wup": _mean_wup(pairs),
        "examples": {n: _near_texts(bank, n)[:n_examples] for n in examples if n in bank.classes},
    }


def _mean_wup(pairs: list[tuple[str, str]]) -> Optional[float]:
    if not pairs:
        return None
    from .wordnet_gen import WuPalmer, load_wordnet

    wn = load_wordnet()
    wup = WuPalmer()
    sims = [wup(wn.synset(a), wn.synset(b)) for a, b in pairs]
    return round(sum(sims) / len(sims), 4)


def quality_lines(quality: dict) -> list[str]:
    """Human-readable lines of a :func:`bank_quality` dict (what the ``antibodies`` command prints)."""
    q = quality
    shared = q["largest_shared"]
    lines = [f"near-OOD lists: {q['distinct_near_lists']} distinct over {q['classes']} classes "
             f"({100 * q['distinct_share']:.1f}%)"
             + (f"; largest group sharing one list: {shared['classes']} classes (e.g. "
                f"{', '.join(shared['names'][:3])})" if shared["classes"] else ""),
             f"near-OOD per class: {q['mean_near']:.2f} on average; {q['short_near']} classes "
             f"({100 * q['short_share']:.1f}%) short of "
             f"{q['n_near_wanted'] if q['n_near_wanted'] is not None else 'the requested count'}"
             + (f" (e.g. {', '.join(q['short_examples'][:3])})" if q["short_examples"] else "")]
    if q["mean_wup"] is not None or q["mean_hop"] is not None:
        parts = []
        if q["mean_hop"] is not None:
            parts.append(f"mean WordNet hop {q['mean_hop']:.2f}")
        if q["mean_wup"] is not None:
            parts.append(f"mean Wu-Palmer similarity to the class {q['mean_wup']:.3f}")
        lines.append("look-alikes: " + ", ".join(parts))
    lines += [f"  {name}: {', '.join(texts) or '(none)'}" for name, texts in q["examples"].items()]
    return lines
