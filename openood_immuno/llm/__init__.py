"""Every language-model call of the project: antibody generation (Immuno-VLM) and the ANTS MLLM.

* :mod:`.spec` -- the one grammar of a model reference (``hf:NAME_OR_PATH``,
  ``openai:MODEL@URL``, ``openai:URL``, ``none``, ``scripted``);
* :mod:`.http` -- the one OpenAI-compatible JSON client (total deadline per request, API key
  from one environment variable, classified errors);
* :mod:`.hub` -- where ``hf:`` weights come from (local folder, Hugging Face cache, the Hub),
  offline detected in seconds;
* :mod:`.cost` -- request / failure / image counts and the failure budget after which an
  endpoint is given up;
* :mod:`.chat` -- text chat backends (transformers, OpenAI-compatible);
* :mod:`.params` -- the ``llm_*`` parameters of a method that asks a text LLM (EOE, NegRefine);
* :mod:`.vision` -- MLLM backends (transformers VLM, OpenAI-compatible vision, scripted);
* :mod:`.parsing` -- the one list-answer parser and the description parser.

The modules here import torch and transformers only when a transformers backend is built.
"""
