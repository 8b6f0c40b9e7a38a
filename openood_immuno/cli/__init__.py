"""The ``openood-immuno`` command line: one module per sub-command.

* :mod:`.eval` -- score postprocessors on an OpenOOD data_root;
* :mod:`.report` -- markdown, leaderboard CSV and plots of eval results;
* :mod:`.antibodies` -- build an Immuno-VLM antibody bank;
* :mod:`.vaccinate` -- train and cache an Immuno-VLM rejection adapter;
* :mod:`.neglabels` -- export or check NegLabel's negative label list;
* :mod:`.args` -- flags shared by several commands and the parsers of their values;
* :mod:`.errors` -- any exception -> the one line ``openood-immuno: error: ...``.

The parser imports no torch, open_clip or transformers (``--help`` is instant); each command
imports what it needs when it runs, after its flags are checked.
"""
from .main import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
