"""Where a run's antibodies come from: the bank named by ``antibody_bank`` (the WordNet bank of
the ID classes, built on first use and cached, or a bank JSON), or a Table-2 ablation that
replaces the bank's texts: ``random_words`` (as many random WordNet nouns per class as the bank
has antibodies) and ``gaussian_noise`` (as many isotropic random unit vectors: the "classic"
artificial immune system of Thm 3.5, not samples around the prototypes)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from openood_immuno.core.cache import cache_dir, content_key
from .antibodies import Antibody, AntibodyBank, BankError
from .generators import build_bank, id_classes
from .params import ImmunoZeroShotParams

log = logging.getLogger(__name__)


def wordnet_bank(class_names: list[str], n_near: int, n_contextual: int, seed: int) -> AntibodyBank:
    """The WordNet bank of ``class_names``, built once and cached (a damaged cache file is rebuilt)."""
    from .wordnet_gen import CONTEXT_PATTERNS, WORDNET_GENERATOR_VERSION, WordNetGenerator

    key = content_key("wordnet-bank", WORDNET_GENERATOR_VERSION, CONTEXT_PATTERNS, class_names,
                      n_near, n_contextual, seed)
    path = cache_dir("antibodies") / f"wordnet-{key}.json"
    if path.is_file():
        try:
            bank = AntibodyBank.load(path)
        except BankError as exc:  # a damaged cache file: rebuild it
            log.warning("cached WordNet bank %s is unreadable (%s): rebuilding it", path, exc)
            path.unlink()
        else:
            if not bank.missing():
                return bank
    log.info("building the WordNet antibody bank for %d classes (cached in %s)", len(class_names), path)
    bank = build_bank(WordNetGenerator(n_near, n_contextual, seed=seed), id_classes(class_names),
                      path, short_log_level=logging.DEBUG)
    if bank.short:
        log.info("WordNet bank: %d of %d classes have fewer antibodies than asked (see 'short' in %s)",
                 len(bank.short), len(set(class_names)), path)
    return bank


def bank_key(params: ImmunoZeroShotParams, class_names: Sequence[str]) -> str:
    """What :func:`load_bank` depends on."""
    if params.antibody_bank == "wordnet":
        return content_key("wordnet", list(class_names), params.n_near, params.n_contextual, params.seed,
                           params.allow_partial_bank)
    return content_key(params.antibody_bank, list(class_names), params.allow_partial_bank)


def load_bank(params: ImmunoZeroShotParams, class_names: Sequence[str]) -> AntibodyBank:
    """The bank of ``antibody_bank``: ``wordnet`` (on the fly) or a complete bank JSON, covering
    at least half of the ID classes unless ``allow_partial_bank``."""
    names = list(class_names)
    if params.antibody_bank == "wordnet":
        bank = wordnet_bank(names, params.n_near, params.n_contextual, params.seed)
        bank.require_coverage(names, "the WordNet antibody bank (antibody_bank: wordnet)",
                              params.allow_partial_bank)
        return bank
    bank = AntibodyBank.load(Path(params.antibody_bank).expanduser())
    bank.require_complete(names, f"antibody bank {params.antibody_bank!r}", params.allow_partial_bank)
    return bank


def antibody_texts(bank: AntibodyBank, class_names: Sequence[str],
                   params: ImmunoZeroShotParams) -> list[list[Antibody]]:
    """Per ID class, the antibodies to encode: the bank's, or (``antibody_source:
    random_words``) as many random WordNet nouns (never an ID name or lemma), seeded."""
    per_class = [bank.antibodies_for(n) for n in class_names]
    if params.antibody_source != "random_words":
        return per_class
    from .wordnet_gen import random_wordnet_words

    words = random_wordnet_words([len(v) for v in per_class], id_classes(list(class_names)), params.seed)
    return [[Antibody(w, "near_ood", "random-wordnet-noun") for w in ws] for ws in words]


def isotropic_antibodies(owner: torch.Tensor, dim: int, seed: int,
                         device: str | torch.device = "cpu") -> torch.Tensor:
    """Table-2 row (B), Thm 3.5's isotropic negatives: ``a = normalise(eps)``,
    ``eps ~ N(0, I_d)``, i.e. uniform on the unit sphere and independent of every prototype
    (``E cos(a, mu) = 0``, std ``~ 1/sqrt(d)``); one per antibody slot of the bank (``owner``
    keeps each slot's class), seeded, drawn on the CPU so every device gets the same vectors."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(owner.shape[0], dim, generator=gen), dim=1).to(device)
