"""Immuno-VLM (Immunizing Large Vision-Language Models via Generative Semantic Antibodies).

Modules, one job each:

* :mod:`.params` -- every parameter with its default, one class per variant;
* :mod:`.antibodies` -- the versioned JSON antibody bank (format, validation, de-duplication);
* :mod:`.generation` -- the generator interface; :mod:`.generators` -- the factory and the
  bank-building driver (resumable);
* :mod:`.wordnet_gen` -- offline WordNet antibodies (look-alikes, contextual patterns, random words);
* :mod:`.bank_quality` -- how good a bank is (distinct lists, shortfalls, WordNet similarity);
* :mod:`.llm_generator` and :mod:`.screening` -- LLM antibodies (backends: :mod:`openood_immuno.llm`);
* :mod:`.antibody_sources` -- a run's antibodies: the (cached) WordNet bank or a bank JSON, and
  the random-words / Gaussian-noise ablations;
* :mod:`.encode` -- antibody texts -> CLIP text embeddings;
* :mod:`.antigen` -- Phase 1: geodesic prototypes and vMF concentrations (Thm 3.4);
* :mod:`.filtration` -- band-pass filtration of antibodies (Prop. 3.6);
* :mod:`.adapter` -- Phase 3: the residual rejection adapter;
* :mod:`.vaccination` -- Phase 3: its push-pull loss and training loop (cached);
* :mod:`.evt` -- per-class Weibull calibration of DIS (Sec. 3.6);
* :mod:`.evt_probe` -- what the EVT decision rejects, on a synthetic probe (the default's evidence);
* :mod:`.scorer` -- the fitted method (on tensors, and on a CLIP net), used by the postprocessors;

The scores themselves are pure functions in :mod:`openood_immuno.scores.immuno`.
"""
