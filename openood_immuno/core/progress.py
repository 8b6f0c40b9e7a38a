"""``--no-progress`` for the whole process: every tqdm bar silenced, ours and the libraries'.

Our bars take a ``progress`` flag, but OpenOOD's ``Evaluator`` (``disable=not
is_main_process()``), the Hugging Face loaders and torch hubs pass their own ``disable``;
:func:`silenced_progress_bars` forces ``disable=True`` on every ``tqdm`` (and subclass) built
inside it, so one switch silences them all.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def silenced_progress_bars(silence: bool = True) -> Iterator[None]:
    """Within the block, every ``tqdm.std.tqdm`` (``tqdm.auto``, OpenOOD's, Hugging Face's: all
    subclasses) is built with ``disable=True``; ``silence=False`` changes nothing."""
    if not silence:
        yield
        return
    from tqdm import std

    original = std.tqdm.__init__

    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    std.tqdm.__init__ = quiet_init
    try:
        yield
    finally:
        std.tqdm.__init__ = original
