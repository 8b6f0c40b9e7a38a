"""The evaluation protocols of the builtin runner (torch-free, so the CLI's parser can offer
them without loading torch):

* ``openood``: OpenOOD v1.5's, the ID test list scored once, then each OOD list on its own;
* ``stream``: per OOD set, the ID test and that OOD list shuffled into one stream (seeded),
  for methods that adapt at test time (ANTS).

:func:`openood_immuno.experiments.runner.evaluate` runs them.
"""
PROTOCOLS = ("openood", "stream")
