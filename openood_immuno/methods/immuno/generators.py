"""The generator factory and the resumable bank-building driver (Immuno-VLM, Phase 2).

A generator (interface: :mod:`.generation`) turns one ID class into antibodies::

    gen = make_generator("wordnet")          # or "hf:NAME_OR_PATH", "openai:MODEL@URL", "openai:URL"
    bank = build_bank(gen, id_classes("imagenet"), "bank.json")

``build_bank`` skips classes already in the file (resume), saves atomically every few
seconds, logs each class that falls short (with the reasons) and records it in the bank's
``short`` section. A class whose generator got no answer at all (HTTP error, timeout) is not
stored, so re-running the same command retries it; a generator that cannot work (model or
endpoint gone, ``max_consecutive_failures`` classes without an answer) stops the run after
saving, with an error telling how to resume.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from openood_immuno.data.classnames import imagenet_classes, resolve_class_names
from openood_immuno.llm.errors import BackendUnavailable
from openood_immuno.llm.spec import parse_spec
from .antibodies import AntibodyBank
from .generation import AntibodyGenerator, ClassInfo, GeneratorUnavailable

log = logging.getLogger(__name__)


def id_classes(id_spec: str | Sequence[str]) -> list[ClassInfo]:
    """``'imagenet'`` (names with wnids), a text file of names (one a line), or a name list."""
    if isinstance(id_spec, str) and id_spec == "imagenet":
        return [ClassInfo(name, wnid) for wnid, name in imagenet_classes()]
    if isinstance(id_spec, str):
        path = Path(id_spec)
        if not path.is_file():
            raise ValueError(f"--id must be 'imagenet' or a text file with one class name per "
                             f"line; {id_spec!r} is neither")
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return [ClassInfo(n) for n in resolve_class_names(names)]
    names = resolve_class_names(id_spec)
    if names == [n for _, n in imagenet_classes()]:
        return id_classes("imagenet")
    return [ClassInfo(n) for n in names]


LLM_OPTIONS = ("device", "dtype", "api_key_env", "timeout_s", "temperature", "max_new_tokens",
               "give_up_after", "failure_budget_s")
LOOP_OPTIONS = ("retries", "retry_wait")


def make_generator(spec: str, n_near: int = 10, n_contextual: int = 5, seed: int = 0,
                   **options) -> AntibodyGenerator:
    """``wordnet`` | ``hf:NAME_OR_PATH`` | ``openai:MODEL@URL`` | ``openai:URL`` (first listed model).

    The model reference follows :mod:`openood_immuno.llm.spec`. ``options`` go to the LLM
    generators: :data:`LLM_OPTIONS` to the chat backend
    (:func:`openood_immuno.llm.chat.build_chat_backend`), :data:`LOOP_OPTIONS` to
    :class:`~.llm_generator.LLMGenerator`.
    """
    parsed = parse_spec(spec, "generator", keywords=("wordnet",))
    if parsed.kind == "wordnet":
        if options:
            raise ValueError(f"the wordnet generator takes no LLM options, got {sorted(options)}")
        from .wordnet_gen import WordNetGenerator

        return WordNetGenerator(n_near, n_contextual, seed=seed)
    unknown = sorted(set(options) - set(LLM_OPTIONS) - set(LOOP_OPTIONS))
    if unknown:
        raise ValueError(f"unknown LLM generator option(s) {unknown}: use {LLM_OPTIONS + LOOP_OPTIONS}")
    from openood_immuno.llm.chat import build_chat_backend
    from .llm_generator import LLMGenerator

    loop = {k: options.pop(k) for k in LOOP_OPTIONS if k in options}
    try:
        backend = build_chat_backend(parsed, **options)
    except BackendUnavailable as exc:
        raise GeneratorUnavailable(str(exc)) from exc
    return LLMGenerator(backend, n_near, n_contextual, seed=seed, **loop)


def build_bank(generator: AntibodyGenerator, classes: Sequence[ClassInfo], out: str | Path,
               progress: bool = True, save_every_s: float = 5.0,
               max_consecutive_failures: int = 10, short_log_level: int = logging.WARNING) -> AntibodyBank:
    """Generate antibodies for every class not yet in ``out`` and save the bank there.

    Classes sharing a name are generated from each of their ``ClassInfo`` and merged. Each
    class that falls short is logged at ``short_log_level`` and recorded in ``bank.short``.
    """
    class_names = [c.name for c in classes]
    bank = AntibodyBank.open_for_generation(out, class_names, generator.provenance())
    todo: dict[str, list[ClassInfo]] = {}
    for c in classes:
        if c.name not in bank:
            todo.setdefault(c.name, []).append(c)
    if todo:
        generator.prepare(classes)
    if len(todo) < len(set(class_names)):
        log.info("resuming %s: %d classes already done, %d to go", out,
                 len(set(class_names)) - len(todo), len(todo))
    failures, last_save, unanswered = 0, time.monotonic(), []
    try:
        for name, infos in tqdm(todo.items(), desc=f"antibodies ({generator.name})",
                                disable=not progress):
            results = [generator.generate(info) for info in infos]
            antibodies = [ab for r in results for ab in r.antibodies]
            problems = [p for r in results for p in r.problems]
            if not antibodies and not any(r.answered for r in results):
                failures += 1
                unanswered.append(name)
                log.warning("class %r: no answer (%s); it stays pending", name, "; ".join(problems[-2:]))
                if failures >= max_consecutive_failures:
                    raise GeneratorUnavailable(f"{generator.name}: no answer for {failures} classes "
                                               f"in a row (last: {problems[-1] if problems else '-'})")
                continue
            failures = 0
            bank.add_class(name, antibodies, generator.wanted, problems)
            if name in bank.short:
                counts = bank.short[name]
                log.log(short_log_level, "class %r fell short: %d/%d near-OOD, %d/%d contextual%s", name,
                        counts["near_ood"], generator.n_near, counts["contextual"],
                        generator.n_contextual, f" ({'; '.join(problems[-3:])})" if problems else "")
            if time.monotonic() - last_save >= save_every_s:
                bank.save(out)
                last_save = time.monotonic()
    except GeneratorUnavailable as exc:
        bank.save(out)
        raise GeneratorUnavailable(f"{exc}. Progress ({len(bank.classes)} classes) is saved in {out}: "
                                   "fix the model/endpoint and re-run the same command to resume") from exc
    if unanswered:
        log.warning("%d classes got no answer (e.g. %s) and are not in %s yet: re-run the same "
                    "command to retry them", len(unanswered), unanswered[:3], out)
    bank.save(out)
    return bank
