"""Antibody texts -> CLIP text embeddings (one template per kind; unique texts encoded once)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .antibodies import KINDS, Antibody


def encode_antibodies(net, per_class: Sequence[Sequence[Antibody]],
                      templates: Mapping[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings [M, d], owner [M])`` for ``per_class[c]`` = the antibodies of class ``c``.

    ``templates[kind]`` formats each text of that kind (``"a photo of a {}."`` for near-OOD
    names, ``"a photo of {}."`` for contextual sentences, which carry their own article).
    """
    rows = [(c, ab.text, ab.kind) for c, abs_ in enumerate(per_class) for ab in abs_]
    emb = torch.zeros(len(rows), net.embed_dim, device=net.device)
    for kind in KINDS:
        idx = [i for i, r in enumerate(rows) if r[2] == kind]
        if not idx:
            continue
        texts = sorted({rows[i][1] for i in idx})
        table = net.encode_text(texts, [templates[kind]]).float().to(net.device)
        pos = {t: j for j, t in enumerate(texts)}
        emb[idx] = table[[pos[rows[i][1]] for i in idx]]
    return emb, torch.tensor([r[0] for r in rows], dtype=torch.long)
