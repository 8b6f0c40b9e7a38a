"""OpenOOD postprocessors of openood-immuno (installed as ``openood_immuno.postprocessors``).

One file per method; each class names its ``method`` and its ``params_class`` (the method's
parameter dataclass, the only place defaults live). :mod:`.registry` imports every one of them
by name (the ``method -> class`` table) and builds them from the shipped yml configs.
"""
