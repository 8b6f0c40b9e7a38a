"""Offline antibodies from WordNet 3.0 (nltk): the default generator, and random words.

Near-OOD look-alikes of class ``c`` (synset ``s``) come from ``s``'s neighbourhood: hop 1 =
its co-hyponyms (other children of its hypernyms), hop 2 = cousins (grandchildren of its
grandparents), and so on up to ``max_hops`` (default 4, our choice: hop 5 reaches unrelated
concepts, e.g. engines for "laptop computer"); a farther hop is used only when the nearer ones
do not fill ``n_near``. Excluded: ``s`` and its whole hypernym and hyponym
lineage, every other ID class synset with its hyponyms (their photos are ID) and hypernyms
(a photo of "terrier" may be an ID terrier class), and every text equal to a lemma of those
synsets or to an ID class name. Within a hop, better-known concepts come first (WordNet's
SemCor lemma frequencies, then the synset name), so the output is deterministic.

Contextual anomalies combine the class name with anomaly patterns ("a {c} made of clouds",
"a melting {c}", "a robotic {c}", ...), ``n_contextual`` of them per class drawn with a
per-class seeded RNG.

Class -> synset: the ImageNet wnid (``n01440764`` = noun offset 1440764), else the first noun
sense of the name, else of its head noun (last word); a class with none gets no look-alikes
and is recorded as short.
"""
from __future__ import annotations

import random
from typing import Callable, Iterable, Iterator, Optional, Sequence

from ..cache import content_key
from .antibodies import Antibody, normalise_text
from .generators import AntibodyGenerator, ClassInfo, Generated, GeneratorUnavailable
from .parsing import mentions

WORDNET_GENERATOR_VERSION = 1
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


def neighbourhood(s, max_hops: int, popularity: Callable[[object], int]) -> Iterator[tuple[int, object]]:
    """``(hop, synset)`` relatives of ``s`` (k generations up, then k down), nearest hop first,
    most popular first within a hop; lazy, so far hops are only enumerated when needed."""
    seen = {s} | _closure(s, _up) | _closure(s, _down)
    frontier = {s}
    for hop in range(1, max_hops + 1):
        frontier = {p for f in frontier for p in _up(f)}
        level = set(frontier)
        for _ in range(hop):
            level = {c for x in level for c in _down(x)}
        fresh = sorted(level - seen, key=lambda x: (-popularity(x), x.name()))
        seen |= level
        for x in fresh:
            yield hop, x


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

    def provenance(self) -> dict:
        return {"generator": self.name, "model": f"WordNet {self._wn.get_version()} (nltk)",
                "prompts": {"contextual_patterns": list(self.patterns)}, "seed": self.seed,
                "params": {"n_near": self.n_near, "n_contextual": self.n_contextual,
                           "max_hops": self.max_hops},
                "generator_version": WORDNET_GENERATOR_VERSION}

    def prepare(self, classes: Sequence[ClassInfo]) -> None:
        self._excl = IDExclusions(self._wn, classes)
        self._counts = self._counts or SenseCounts(self._wn)

    def generate(self, cls: ClassInfo) -> Generated:
        if self._excl is None or cls not in self._excl.class_synsets:
            raise RuntimeError("call prepare() with every ID class before generate()")
        synset, note = self._excl.class_synsets[cls]
        out = Generated(problems=[note] if note else [])
        if synset is not None:
            out.antibodies += self._near(cls, synset)
        rng = random.Random(content_key("wordnet-contextual", self.seed, cls.name))
        for pattern in rng.sample(self.patterns, self.n_contextual):
            out.antibodies.append(Antibody(with_article(pattern.format(c=cls.name)), "contextual",
                                           f"pattern:{pattern}"))
        return out

    def _near(self, cls: ClassInfo, synset) -> list[Antibody]:
        cls_norm = normalise_text(cls.name)
        found: list[Antibody] = []
        taken: set[str] = set()
        for hop, cand in neighbourhood(synset, self.max_hops, self._counts.popularity):
            if len(found) >= self.n_near:
                break
            if cand in self._excl.synsets:
                continue
            names = sorted(cand.lemma_names(), key=lambda n: n[:1].isupper())  # common nouns first
            for name in names:
                text = lemma_text(name)
                norm = normalise_text(text)
                if self._excl.blocks_text(text) or mentions(norm, cls_norm) or norm in taken:
                    continue
                found.append(Antibody(text, "near_ood", f"wordnet:{synset.name()}->{cand.name()}:hop{hop}"))
                taken.add(norm)
                break
        return found


def random_wordnet_words(counts: Sequence[int], classes: Iterable[ClassInfo], seed: int = 0) -> list[list[str]]:
    """Table-2 ablation: for class ``i``, ``counts[i]`` random WordNet nouns (seeded), never an
    ID class name or a lemma of an ID synset or its hyponyms."""
    wn = load_wordnet()
    excl = IDExclusions(wn, list(classes))
    pool = sorted({lemma_text(n) for n in wn.all_lemma_names(pos=wn.NOUN)} - {""})
    pool = [w for w in pool if not excl.blocks_text(w)]
    rng = random.Random(content_key("random-words", seed))
    return [rng.sample(pool, k) for k in counts]
