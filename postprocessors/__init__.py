"""OpenOOD postprocessors of openood-immuno (installed as ``openood_immuno.postprocessors``).

One file per method; each class names its ``method`` and its parameter ``defaults``.
"""
