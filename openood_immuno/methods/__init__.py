"""The methods, one package each (``params.py``, ``scorer.py``, one module per paper concept).

They fit and score on features and text encoders; they know nothing of OpenOOD, runs or files
of results. ``ants`` builds on ``neglabel``; no other method imports another."""
