"""Postprocessor configs in OpenOOD's yml format, shipped inside the package.

A config file ``configs/postprocessors/<name>.yml`` reads::

    postprocessor:
      name: mcm              # the name users select
      method: mcm            # the scorer class (defaults to name; ablations reuse a class)
      APS_mode: false        # OpenOOD's automatic parameter search on ID val vs OpenImage-O val
      postprocessor_args: {T: 0.5}           # only what differs from the method's defaults
      postprocessor_sweep: {T_list: [0.5, 1.0, 2.0]}

The parameters, their defaults and default sweep lists live in the method's params dataclass
(``openood_immuno/<method>/params.py``); a yml carries only what differs. ``base: NAME`` at
the top of a yml inherits NAME.yml: its ``postprocessor`` keys are taken, then overridden key by
key, ``postprocessor_args`` and ``postprocessor_sweep`` entry by entry. The APS grid is then
built from the merged ``postprocessor_sweep`` (:meth:`~openood_immuno.core.params.Params.sweep_from_mapping`):
if it names lists, exactly those are swept (every other parameter stays at its argument);
if it names none, the dataclass's default lists are swept, less the entries set to ``null``.
A yml with every argument written out (a user's OpenOOD config) loads the same way.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

_MERGED = ("postprocessor_args", "postprocessor_sweep")


class Config(dict):
    """A dict with attribute access, nested (the shape of OpenOOD's ``Config``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, value in list(self.items()):
            if isinstance(value, Mapping) and not isinstance(value, Config):
                self[key] = Config(value)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = Config(value) if isinstance(value, Mapping) and not isinstance(value, Config) else value


def config_dir() -> Path:
    """Folder of the shipped postprocessor yml files."""
    return Path(str(resources.files("openood_immuno.configs") / "postprocessors"))


def available_postprocessors() -> list[str]:
    """Names of every shipped postprocessor config."""
    return sorted(p.stem for p in config_dir().glob("*.yml"))


def postprocessor_yml(name: str) -> Path:
    path = config_dir() / f"{name}.yml"
    if not path.is_file():
        raise KeyError(f"unknown postprocessor {name!r}: available {available_postprocessors()}")
    return path


def merge_postprocessor(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child``'s ``postprocessor`` section over ``base``'s: keys replaced, args and sweep merged
    entry by entry (the ``base:`` rule above; ``null`` sweep entries are kept for the loader)."""
    out = {k: v for k, v in base.items() if k not in _MERGED}
    out.update({k: v for k, v in child.items() if k not in _MERGED})
    for key in _MERGED:
        merged = {**(base.get(key) or {}), **(child.get(key) or {})}
        if merged:
            out[key] = merged
    return out


def load_yml(path: str | Path, what: str = "config") -> Any:
    """The YAML document of ``path``; a syntax error is one ValueError naming the file, line and
    column (``a.yml:3:7: not valid YAML (mapping values are not allowed here): fix the file``)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{problem}, {context}" if context and problem != context else problem
        raise ValueError(f"{where}: {what} is not valid YAML ({detail}): fix the file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: {what} is not UTF-8 text (byte {exc.start}): convert it to UTF-8") from None


def _read(path: Path) -> Mapping[str, Any]:
    data = load_yml(path, "postprocessor config")
    if not isinstance(data, Mapping) or not isinstance(data.get("postprocessor"), Mapping):
        raise ValueError(f"{path}: not an OpenOOD postprocessor config (no 'postprocessor' section)")
    for key in _MERGED:
        if not isinstance(data["postprocessor"].get(key) or {}, Mapping):
            raise ValueError(f"{path}: postprocessor.{key} must be a mapping of name: value")
    return data


def resolve_postprocessor(name: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``postprocessor`` section of shipped ``name``.yml with its ``base:`` chain applied."""
    if name in _chain:
        raise ValueError(f"{postprocessor_yml(name)}: 'base:' loops through {' -> '.join(_chain + (name,))}")
    path = postprocessor_yml(name)
    data = _read(path)
    section = dict(data["postprocessor"])
    base = data.get("base")
    if base is None:
        return section
    if not isinstance(base, str):
        raise ValueError(f"{path}: 'base' must name another shipped config, got {base!r}")
    try:
        parent = resolve_postprocessor(base, _chain + (name,))
    except KeyError as exc:
        raise KeyError(f"{path}: base {base!r} is not a shipped config: available "
                       f"{available_postprocessors()}") from exc
    return merge_postprocessor(parent, section)


def load_postprocessor_config(name: str, id_name: str = "imagenet") -> Config:
    """The shipped config of ``name`` (``base:`` applied) with ``dataset.name = id_name`` (as
    OpenOOD merges it)."""
    section = {"postprocessor_args": {}, "postprocessor_sweep": {}, **resolve_postprocessor(name)}
    return Config({"postprocessor": section, "dataset": {"name": id_name}})
