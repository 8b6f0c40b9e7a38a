"""Offline antibodies from WordNet 3.0 (nltk): the default generator, and random words.

Near-OOD look-alikes of class ``c`` (synset ``s``) come from ``s``'s neighbourhood: the
descendants (at most ``k + 1`` levels down) of its ancestors ``k`` = 1, 2, ... ``max_hops``
levels up (default 4, our choice: hop 5 reaches unrelated concepts, e.g. engines for "laptop
computer"); hop ``k`` is the distance from ``s`` to the lowest common hypernym. Farther hops
are enumerated until ``3 n_near`` candidates are found (deeper levels stop at ``10 n_near``).
Excluded: ``s`` and its whole hypernym and hyponym lineage, every other ID class synset with
its hyponyms (their photos are ID) and hypernyms (a photo of "terrier" may be an ID terrier
class), and every text equal to a lemma of those synsets or to an ID class name.

Ranking (generator version 2): by the Wu-Palmer similarity to ``s`` minus the amount by which
the candidate is closer to another ID class,

    score(a) = wup(a, s) - max(0, max_{s' in ID, s' != s} wup(a, s') - wup(a, s)),

so a look-alike goes to the ID class it resembles most (for "tiger", "puppy" is nearer the ID
dog breeds and falls behind the other big cats). Ties: concepts before proper-name instances,
then candidates named by a lemma whose first noun sense they are (CLIP reads "down" as
feathers, not a hill), then the number of content words the two glosses share, then
WordNet's SemCor sense counts, then the synset name; of a candidate's lemmas, the common
nouns (not capitalised) and then the first-sense ones come first. ID siblings with the same
neighbourhood (the dog breeds) would get identical lists; each class instead takes, in the
class order given to ``prepare`` (so a resumed bank gets the same lists), the first
``n_near`` subset of its ranking in lexicographic rank order (top ``n_near``, then the top
``n_near - 1`` with the next candidate, ...) that no earlier class has, so the lists differ
with the least change to the ranking.

Contextual anomalies combine the class name with anomaly patterns ("a {c} made of clouds",
"a melting {c}", "a robotic {c}", ...), ``n_contextual`` of them per class drawn with a
per-class seeded RNG.

Class -> synset: the ImageNet wnid (``n01440764`` = noun offset 1440764), else the first noun
sense of the name, else of its head noun (last word); a class with none gets no look-alikes
and is recorded as short.
"""
from __future__ import annotations

import functools
import itertools
import random
import re
from typing import Iterable, Iterator, Optional, Sequence

from openood_immuno.core.cache import content_key
from .antibodies import Antibody, normalise_text
from .generation import AntibodyGenerator, ClassInfo, Generated, GeneratorUnavailable
from .screening import mentions

WORDNET_GENERATOR_VERSION = 2
CONTEXT_PATTERNS = (
    "{c} made of clouds", "melting {c}", "robotic {c}", "{c} made of glass",
    "{c} carved from ice", "{c} made of smoke", "{c} built from lego bricks",
    "{c} floating in outer space", "{c} made of liquid metal", "{c} sculpted from sand",
    "giant {c} towering over a city", "{c} made of fire",
)


def _first_words(exc: BaseException) -> str:
    """The first line of an nltk error that says something (nltk frames it in asterisks)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip().strip("*")]
    return lines[0] if lines else type(exc).__name__


def load_wordnet():
    """nltk's WordNet reader, or :class:`GeneratorUnavailable` saying how to install it."""
    try:
        from nltk.corpus import wordnet as wn

        wn.ensure_loaded()
    except (LookupError, OSError) as exc:
        raise GeneratorUnavailable(
            "the WordNet corpus is not installed: point NLTK_DATA at a folder holding "
            "corpora/wordnet (e.g. NLTK_DATA=../shared/nltk_data) or run "
            f"`python -m nltk.downloader wordnet` ({_first_words(exc)})") from exc
    return wn


def with_article(phrase: str) -> str:
    """``'melting tench'`` -> ``'a melting tench'``; ``'origami owl'`` -> ``'an origami owl'``."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def lemma_text(name: str) -> str:
    return name.replace("_", " ")


def class_synset(wn, cls: ClassInfo):
    """``(synset or None, note)`` of a class: by wnid, else by name, else by head noun."""
    if cls.wnid:
        try:
            return wn.synset_from_pos_and_offset(cls.wnid[0], int(cls.wnid[1:])), ""
        except Exception:  # nltk raises WordNetError/ValueError for unknown offsets
            pass
    found = wn.synsets(cls.name.replace(" ", "_"), pos=wn.NOUN)
    if found:
        return found[0], "" if not cls.wnid else f"wnid {cls.wnid} unknown, matched by name"
    head = cls.name.split()[-1] if cls.name.split() else ""
    found = wn.synsets(head, pos=wn.NOUN) if head and head != cls.name else []
    if found:
        return found[0], f"not in WordNet, matched by head noun {head!r}"
    return None, "not in WordNet (no noun sense for the name or its head noun)"


def _up(s) -> list:
    return s.hypernyms() + s.instance_hypernyms()


def _down(s) -> list:
    return s.hyponyms() + s.instance_hyponyms()


def _closure(s, step) -> set:
    out, stack = set(), [s]
    while stack:
        for nxt in step(stack.pop()):
            if nxt not in out:
                out.add(nxt)
                stack.append(nxt)
    return out


class WuPalmer:
    """Wu-Palmer similarity of two synsets over hypernym and instance-hypernym links, cached:

        wup(a, b) = 2 depth(l) / (d(a, l) + d(b, l) + 2 depth(l))

    with ``l`` the deepest common ancestor (lowest common hypernym), ``d`` the shortest
    hypernym-path length and ``depth`` the shortest path to the root plus one (Wu & Palmer,
    1994); 1.0 for ``a == b``, 0.0 without a common ancestor. The per-synset ancestor maps
    are cached, which makes it far cheaper than nltk's ``wup_similarity`` over many pairs.
    """

    def __init__(self):
        self._anc: dict = {}
        self._depth: dict = {}
        self._children: dict = {}

    def ancestors(self, s) -> dict:
        """``{ancestor: shortest distance}``, ``s`` itself at 0."""
        if s not in self._anc:
            dist, frontier, k = {s: 0}, [s], 0
            while frontier:
                k += 1
                frontier = [p for f in frontier for p in _up(f) if p not in dist]
                for p in frontier:
                    dist.setdefault(p, k)
            self._anc[s] = dist
        return self._anc[s]

    def depth(self, s) -> int:
        if s not in self._depth:
            self._depth[s] = 1 + min((self.depth(p) for p in _up(s)), default=0)
        return self._depth[s]

    def children(self, s) -> list:
        """Hyponyms and instance hyponyms by name (nltk's order varies with the hash seed),
        cached (nltk builds them anew at every call)."""
        if s not in self._children:
            self._children[s] = sorted(_down(s), key=lambda c: c.name())
        return self._children[s]

    def __call__(self, a, b) -> float:
        da, db = self.ancestors(a), self.ancestors(b)
        if len(db) < len(da):
            da, db = db, da
        best = 0.0
        for lcs, d1 in da.items():
            d2 = db.get(lcs)
            if d2 is not None:
                depth = self.depth(lcs)
                best = max(best, 2 * depth / (d1 + d2 + 2 * depth))
        return best


class IDExclusions:
    """What no antibody may be: ID synsets with their lineages, and their lemma texts."""

    def __init__(self, wn, classes: Sequence[ClassInfo]):
        self.synsets: set = set()
        self.names: set[str] = {normalise_text(c.name) for c in classes}
        self.class_synsets: dict[ClassInfo, tuple] = {}
        for c in dict.fromkeys(classes):
            s, note = class_synset(wn, c)
            self.class_synsets[c] = (s, note)
            if s is None:
                continue
            below = _closure(s, _down)
            self.synsets |= {s} | below | _closure(s, _up)
            for syn in {s} | below:
                self.names |= {normalise_text(lemma_text(n)) for n in syn.lemma_names()}

    def blocks_text(self, text: str) -> bool:
        return normalise_text(text) in self.names


class SenseCounts:
    """SemCor tag counts of WordNet senses (``cntlist.rev``), read once.

    ``Lemma.count()`` binary-searches the file on every call, far too slow for 1000 classes.
    """

    def __init__(self, wn):
        self.counts: dict[str, int] = {}
        with wn.open("cntlist.rev") as fh:
            for line in fh:
                key, _, count = line.split()
                self.counts[key] = int(count)

    def popularity(self, synset) -> int:
        return sum(self.counts.get(lemma.key(), 0) for lemma in synset.lemmas())


class IDIndex:
    """ID class synsets by ancestor, to find the ID class nearest to a candidate quickly."""

    def __init__(self, synsets: Iterable, wup: WuPalmer):
        self.wup = wup
        self.below: dict = {}
        for s in set(synsets):
            for anc, dist in wup.ancestors(s).items():
                self.below.setdefault(anc, []).append((dist, s.name(), s))
        for rows in self.below.values():
            rows.sort(key=lambda r: r[:2])
        self._top2: dict = {}

    def nearest_other(self, cand, own) -> float:
        """``max wup(cand, s')`` over the ID synsets ``s' != own`` (0.0 if none)."""
        if cand not in self._top2:
            best: dict = {}
            for anc, d1 in self.wup.ancestors(cand).items():
                depth = self.wup.depth(anc)
                for d2, _, s in self.below.get(anc, ())[:2]:
                    sim = 2 * depth / (d1 + d2 + 2 * depth)
                    if sim > best.get(s, -1.0):
                        best[s] = sim
            self._top2[cand] = sorted(best.items(), key=lambda kv: (-kv[1], kv[0].name()))[:2]
        return next((sim for s, sim in self._top2[cand] if s is not own), 0.0)


_STOP = frozenset("a an and any are as at be by e for from g has having in into is it its of on "
                  "or other that the their to used usually which with".split())


@functools.lru_cache(maxsize=None)
def gloss_words(s) -> frozenset:
    """Content words of a synset's definition and lemmas (lower case, final 's' dropped)."""
    text = (s.definition() + " " + " ".join(s.lemma_names())).replace("_", " ").lower()
    return frozenset(w.rstrip("s") for w in re.findall(r"[a-z]+", text) if w not in _STOP and len(w) > 2)


def neighbourhood(s, max_hops: int, wup: WuPalmer, excluded: set, want: int,
                  cap: int) -> list[tuple[int, object]]:
    """``(hop, synset)`` candidates: descendants (at most ``hop + 1`` levels down, nearest
    level first) of the ancestors ``hop`` levels above ``s``, not ``excluded``, nearest hop
    first; stops after the hop that brings the count to ``want``, or after the level that
    brings it to ``cap``."""
    ancestors = wup.ancestors(s)
    seen, found = set(excluded) | {s}, []
    for hop in range(1, max_hops + 1):
        level = sorted((a for a, d in ancestors.items() if d == hop), key=lambda a: a.name())
        for _ in range(hop + 1):
            level = [c for x in level for c in wup.children(x)]
            for c in level:
                if c not in seen:
                    seen.add(c)
                    found.append((hop, c))
            if len(found) >= cap:
                return found
        if len(found) >= want:
            break
    return found


def first_unused(ranked: Sequence[Antibody], n: int, used: set, limit: int = 20000) -> list[Antibody]:
    """The first ``n``-subset of ``ranked`` in lexicographic rank order whose text set is not
    in ``used`` (the top ``n`` if all of the first ``limit`` subsets are); adds it to ``used``."""
    norms = [normalise_text(a.text) for a in ranked]
    pick = tuple(range(min(n, len(ranked))))
    if len(ranked) > n:
        for combo in itertools.islice(itertools.combinations(range(len(ranked)), n), limit):
            if frozenset(norms[i] for i in combo) not in used:
                pick = combo
                break
    used.add(frozenset(norms[i] for i in pick))
    return [ranked[i] for i in pick]


class WordNetGenerator(AntibodyGenerator):
    """Near-OOD look-alikes from the WordNet neighbourhood + contextual anomaly patterns."""

    name = "wordnet"

    def __init__(self, n_near: int = 10, n_contextual: int = 5,
                 patterns: Sequence[str] = CONTEXT_PATTERNS, max_hops: int = 4, seed: int = 0):
        super().__init__(n_near, n_contextual, seed)
        if n_contextual > len(patterns):
            raise ValueError(f"n_contextual={n_contextual} but only {len(patterns)} patterns")
        if any("{c}" not in p for p in patterns):
            raise ValueError("every contextual pattern must contain '{c}'")
        self.patterns, self.max_hops = tuple(patterns), int(max_hops)
        self._wn = load_wordnet()
        self._excl: Optional[IDExclusions] = None
        self._counts: Optional[SenseCounts] = None
        self._wup, self._index = WuPalmer(), None
        self._order: Iterator = iter(())
        self._near: dict[ClassInfo, list[Antibody]] = {}
        self._used: set = set()
        self._first_sense: dict = {}

    def provenance(self) -> dict:
        return {"generator": self.name, "model": f"WordNet {self._wn.get_version()} (nltk)",
                "prompts": {"contextual_patterns": list(self.patterns)}, "seed": self.seed,
                "params": {"n_near": self.n_near, "n_contextual": self.n_contextual,
                           "max_hops": self.max_hops},
                "generator_version": WORDNET_GENERATOR_VERSION}

    def prepare(self, classes: Sequence[ClassInfo]) -> None:
        self._excl = IDExclusions(self._wn, classes)
        self._counts = self._counts or SenseCounts(self._wn)
        self._index = IDIndex((s for s, _ in self._excl.class_synsets.values() if s is not None),
                              self._wup)
        self._order = iter(self._excl.class_synsets.items())
        self._near, self._used = {}, set()

    def _near_of(self, cls: ClassInfo) -> list[Antibody]:
        """``cls``'s look-alikes; the lists are picked in class order (each must differ from
        the earlier ones), so the classes before ``cls`` are ranked first (once)."""
        while cls not in self._near:
            other, (synset, _) = next(self._order)
            ranked = self.ranked(other, synset) if synset is not None else []
            self._near[other] = first_unused(ranked, self.n_near, self._used)
        return self._near[cls]

    def ranked(self, cls: ClassInfo, synset) -> list[Antibody]:
        """All near-OOD candidates of ``cls`` as antibodies, best first (module docstring)."""
        own_words = gloss_words(synset)
        cls_norm = normalise_text(cls.name)
        rows = []
        wup, index = self._wup, self._index
        for hop, cand in neighbourhood(synset, self.max_hops, wup, self._excl.synsets,
                                      3 * self.n_near, 10 * self.n_near):
            names = [lemma_text(n) for n in cand.lemma_names()]
            names = [t for t in names if not self._excl.blocks_text(t)
                     and not mentions(normalise_text(t), cls_norm)]
            if not names:
                continue
            names.sort(key=lambda t: (t[:1].isupper(), not self._dominant(t, cand)))
            sim = wup(cand, synset)
            score = sim - max(0.0, index.nearest_other(cand, synset) - sim)
            rows.append(((bool(cand.instance_hypernyms()), -round(score, 9),
                          not self._dominant(names[0], cand), -len(own_words & gloss_words(cand)),
                          -self._counts.popularity(cand), cand.name()), hop, cand, names))
        out: list[Antibody] = []
        taken: set[str] = set()
        for _, hop, cand, names in sorted(rows, key=lambda r: r[0]):
            text = next((t for t in names if normalise_text(t) not in taken), None)
            if text is not None:
                out.append(Antibody(text, "near_ood", f"wordnet:{synset.name()}->{cand.name()}:hop{hop}"))
                taken.add(normalise_text(text))
        return out

    def _dominant(self, text: str, synset) -> bool:
        """Whether ``synset`` is the first (most frequent) noun sense of ``text``: otherwise CLIP
        reads the text as another concept ("down" is feathers before it is a hill)."""
        if text not in self._first_sense:
            senses = self._wn.synsets(text.replace(" ", "_"), pos=self._wn.NOUN)
            self._first_sense[text] = senses[0] if senses else None
        return self._first_sense[text] == synset

    def generate(self, cls: ClassInfo) -> Generated:
        if self._excl is None or cls not in self._excl.class_synsets:
            raise RuntimeError("call prepare() with every ID class before generate()")
        synset, note = self._excl.class_synsets[cls]
        out = Generated(problems=[note] if note else [])
        out.antibodies += self._near_of(cls)
        rng = random.Random(content_key("wordnet-contextual", self.seed, cls.name))
        for pattern in rng.sample(self.patterns, self.n_contextual):
            out.antibodies.append(Antibody(with_article(pattern.format(c=cls.name)), "contextual",
                                           f"pattern:{pattern}"))
        return out


def random_wordnet_words(counts: Sequence[int], classes: Iterable[ClassInfo], seed: int = 0) -> list[list[str]]:
    """Table-2 ablation: for class ``i``, ``counts[i]`` random WordNet nouns (seeded), never an
    ID class name or a lemma of an ID synset or its hyponyms."""
    wn = load_wordnet()
    excl = IDExclusions(wn, list(classes))
    pool = sorted({lemma_text(n) for n in wn.all_lemma_names(pos=wn.NOUN)} - {""})
    pool = [w for w in pool if not excl.blocks_text(w)]
    rng = random.Random(content_key("random-words", seed))
    return [rng.sample(pool, k) for k in counts]
