"""Postprocessor configs in OpenOOD's yml format, shipped inside the package.

A config file ``configs/postprocessors/<name>.yml`` reads::

    postprocessor:
      name: mcm              # the name users select
      method: mcm            # the scorer class (defaults to name; ablations reuse a class)
      APS_mode: false        # OpenOOD's automatic parameter search on ID val vs OpenImage-O val
      postprocessor_args: {T: 1.0}
      postprocessor_sweep: {T_list: [0.5, 1.0, 2.0]}
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml


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


def load_postprocessor_config(name: str, id_name: str = "imagenet") -> Config:
    """The shipped config of ``name`` with ``dataset.name = id_name`` (as OpenOOD merges it)."""
    path = postprocessor_yml(name)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping) or "postprocessor" not in data:
        raise ValueError(f"{path}: not an OpenOOD postprocessor config (no 'postprocessor' key)")
    data.setdefault("dataset", {})["name"] = id_name
    return Config(data)
