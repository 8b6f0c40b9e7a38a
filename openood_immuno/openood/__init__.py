"""The glue to a stock OpenOOD v1.5: registration of our postprocessors, CLIP network and
preprocessor, the Evaluator bridge, run-config generation and the ``main.py`` launcher.

Nothing here is needed without OpenOOD; every module imports ``openood`` only inside the functions
that use it."""
