"""Is nltk's WordNet corpus there? Checked before any model is built, for every run that needs it.

NegLabel and ANTS mine their negatives from WordNet (unless ``neg_labels_file`` is given),
Immuno-VLM builds its default bank from it (``antibody_bank: wordnet``) and draws the
``random_words`` ablation from it, and ``openood-immuno antibodies --generator wordnet`` reads
it. :func:`require_wordnet` finds the corpus (``NLTK_DATA`` and nltk's default folders) without
loading it, in milliseconds, and names the fix when it is missing.
"""
from __future__ import annotations

FIX = ("point NLTK_DATA at a folder holding corpora/wordnet (e.g. NLTK_DATA=../shared/nltk_data) "
       "or run `python -m nltk.downloader wordnet`")


def wordnet_root():
    """nltk's path pointer to the WordNet database folder (plain or zipped); LookupError if absent."""
    import nltk

    try:
        return nltk.data.find("corpora/wordnet")
    except LookupError:
        return nltk.data.find("corpora/wordnet.zip/wordnet/")


def require_wordnet(needed_by: str) -> None:
    """LookupError ``<needed_by> needs the WordNet corpus of nltk, which is not installed: <fix>``."""
    try:
        wordnet_root()
    except LookupError:
        raise LookupError(f"{needed_by} needs the WordNet corpus of nltk, which is not installed: "
                          f"{FIX}") from None
