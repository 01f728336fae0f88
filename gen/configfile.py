"""Configuration files: TOML with one table per group (``[array]``, ``[bus]``, ...).

::

    preset = "default"      # optional: the base the tables change
    [array]
    rows = 8                # field array_rows
    cols = 8

A key inside a table is the field name without its group prefix where the
field has one (``array_rows`` -> ``[array] rows``), else the field name.
Top-level keys may also name fields directly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomli_w

from intformer.hw.config import GROUPS, Config, field_group, preset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load", "loads", "dumps", "save"]


def _key(name: str) -> str:
    group = field_group(name)
    prefix = {"array": "array_", "vector": "vector_", "queues": "", "units": "",
              "bus": "", "memory": ""}[group]
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _field(group: str, key: str) -> str:
    for name in Config.field_names():
        if field_group(name) == group and _key(name) == key:
            return name
    raise ValueError(f"Unknown configuration field {key!r} in table [{group}]")


def loads(text: str, *, source: str = "<string>") -> Config:
    """Parse a TOML configuration."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source} is not valid TOML: {e}") from None
    base_name = doc.pop("preset", "default")
    if not isinstance(base_name, str):
        raise TypeError(f"{source}: preset must be a string, not {base_name!r}")
    changes = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            if key not in GROUPS:
                raise ValueError(f"{source}: unknown table [{key}]; the tables are "
                                 f"{', '.join(GROUPS)}")
            for sub, v in value.items():
                changes[_field(key, sub)] = v
        elif key in Config.field_names():
            changes[key] = value
        else:
            raise ValueError(f"{source}: unknown configuration field {key!r}")
    return preset(base_name).replace(**changes)


def load(path: Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"Cannot read configuration file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text TOML file") from None
    return loads(text, source=str(path))


def dumps(config: Config) -> str:
    doc: dict = {}
    for name, value in config.to_dict().items():
        doc.setdefault(field_group(name), {})[_key(name)] = value
    return tomli_w.dumps(doc)


def save(config: Config, path: Path) -> None:
    Path(path).write_text(dumps(config))
