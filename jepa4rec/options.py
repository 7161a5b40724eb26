"""Options of a run as dataclasses: read from YAML/JSON files and ``--set key=value`` overrides, type-checked.

The machinery only; the options themselves (every field with its default, documented beside it) are the
dataclasses of :mod:`jepa4rec.config`. A config file overrides a dataclass's defaults and command-line
``--set`` pairs (dotted keys for sections such as ``optim.lr``, values parsed as YAML) override the file.
An unknown option, a section given a plain value, or a value of the wrong type (checked against the field's
annotation, resolved with :func:`typing.get_type_hints`) is a :class:`~jepa4rec.errors.ConfigError`, by
name, before anything runs.

YAML values follow YAML 1.2 for booleans (``true`` / ``false`` only), so ``--set mixed_precision=no`` is the
string it documents, and a float written ``1e-4`` (which YAML 1.1 reads as a string) is read as the float.
"""
from __future__ import annotations

import json
import math
import re
import types
import typing
import warnings
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .paths import CONFIG_DIR


# --- validators the config classes share -----------------------------------------------------------------

def check_choice(name: str, value, choices: tuple) -> None:
    """Options naming one of a few modes fail here, before a run starts, rather than mid-run."""
    if value not in choices:
        raise ConfigError(f"option '{name}' must be one of {list(choices)}, got {value!r}")


def check_range(name: str, value, low=None, high=None, above=None, below=None) -> None:
    """An impossible number (batch_size 0, a negative or NaN learning rate) fails here, by name, rather than
    mid-run or, worse, as a run that trains nothing. Values of the wrong type are :func:`check_type`'s."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    bounds = [f"≥ {low}" if low is not None else "", f"> {above}" if above is not None else "",
              f"≤ {high}" if high is not None else "", f"< {below}" if below is not None else ""]
    ok = (math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
          and (above is None or value > above) and (below is None or value < below))
    if not ok:
        finite = "" if math.isfinite(value) else "a finite number "
        raise ConfigError(f"option '{name}' must be {finite}{' and '.join(b for b in bounds if b)}, got {value!r}")


# --- type checking against the annotations ----------------------------------------------------------------

def _as_float(value):
    """``value`` as a float when it is a string float() reads: YAML 1.1 reads ``1e-4`` (no dot) as a string."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _conform(tp, value) -> tuple[bool, Any]:
    """(whether ``value`` fits the type ``tp``, the value as it is kept: a float written ``1e-4`` as a float, a
    YAML list for a tuple as a tuple). A bool is not an int; an int is a float."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        if str in args and isinstance(value, str):  # a string option keeps its text
            return True, value
        for arg in args:
            ok, kept = _conform(arg, value)
            if ok:
                return True, kept
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        value = _as_float(value)
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    if origin is tuple or tp is tuple:
        if not isinstance(value, (tuple, list)):
            return False, value
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            return False, value
        kept = []
        for i, v in enumerate(value):
            ok, k = _conform(args[0] if args and args[-1] is Ellipsis else (args[i] if args else Any), v)
            if not ok:
                return False, value
            kept.append(k)
        return True, tuple(kept)
    if origin is list or tp is list:
        if not isinstance(value, list):
            return False, value
        kept = []
        for v in value:
            ok, k = _conform(args[0] if args else Any, v)
            if not ok:
                return False, value
            kept.append(k)
        return True, kept
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    return True, value  # a type this check does not know (a nested section is built, not checked)


def _type_name(tp) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "").replace("NoneType", "None")


def check_type(cls, key: str, tp, value):
    """Reject a value of the wrong type (e.g. ``--set batch_size=abc``) before any run starts, naming it;
    returns the value as kept (see :func:`_conform`)."""
    ok, kept = _conform(tp, value)
    if not ok:
        raise ConfigError(f"option '{key}' of {cls.__name__} must be {_type_name(tp)}, got {value!r}")
    return kept


# --- building a config from plain data ----------------------------------------------------------------------

def current_spelling(cls, data: dict, warn: bool = True) -> dict:
    """``data`` with the old flat spellings of ``cls``'s options (its ``RENAMED`` map) moved into their
    sections; a FutureWarning names each one when ``warn``. Also reads the configs stored with runs made
    before the move."""
    renamed = getattr(cls, "RENAMED", {})
    if not any(old in data for old in renamed):
        return data
    data = dict(data)
    for old, new in renamed.items():
        section, key = new.split(".")
        if old not in data or not isinstance(data.get(section, {}), dict):
            continue
        moved = dict(data.get(section) or {})
        if key in moved:
            raise ConfigError(f"option '{old}' is the old spelling of '{new}', which is set too", hint=f"keep only {new}")
        moved[key] = data.pop(old)
        data[section] = moved
        if warn:
            warnings.warn(f"option '{old}' of {cls.__name__} is spelled '{new}' now; the old spelling is read "
                          "for now", FutureWarning, stacklevel=3)
    return data


def build(cls, data: dict, prefix: str = ""):
    """An instance of the dataclass ``cls`` from ``data``: each key checked against the fields and their
    types, sections built over this class's own section defaults (fine-tuning's ``optim.lr`` is 5e-5).
    ``prefix`` is a section's dotted name (``optim.``), so an error names the option as it is set."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown option '{prefix}{key}' for {cls.__name__}; known: {sorted(known)}")
        default = getattr(defaults, key)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"option '{prefix}{key}' of {cls.__name__} is a section, got {value!r}",
                                  hint=f"set its fields one by one: --set {prefix}{key}.NAME=VALUE")
            value = build(type(default), {**{f.name: getattr(default, f.name) for f in fields(default)}, **value},
                          prefix=f"{prefix}{key}.")
        else:
            value = check_type(cls, f"{prefix}{key}", hints[key], value)
        kwargs[key] = value
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    """A config as plain JSON-ready data (tuples as lists)."""
    return json.loads(json.dumps(asdict(cfg), default=list))


def changed_options(saved: dict, cfg, ignore: frozenset[str] = frozenset()) -> list[str]:
    """``"name: old -> new"`` for each option of ``cfg`` whose value differs from ``saved`` (a run's config.json),
    sections dotted (``optim.lr``), leaving out the options named in ``ignore`` (those that only say how a run is
    carried out). What a resumed run tells its user when it goes on with other options than it began with."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and k != "model":  # model.* overrides compare as one dict: keys come and go
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    before, now = flat(saved), flat(to_dict(cfg))
    return [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
            if k not in ignore and before.get(k) != now.get(k)]


def config_yaml(cfg) -> str:
    """``cfg`` as the YAML a ``--config`` file holds (every option, resolved), so a printed config reads back
    as the same run."""
    header = (f"# {type(cfg).__name__}: every option of the run; each is documented beside its field in "
              "jepa4rec/config.py\n")
    return header + yaml.safe_dump(to_dict(cfg), sort_keys=False)


# --- YAML and --set --------------------------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error: PyYAML keeps the last one
    silently, so a run would not be the one the file seems to describe."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"option '{key}' is given twice (line {key_node.start_mark.line + 1})",
                                  hint="keep only one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 reads yes / no / on / off as booleans, so `--set mixed_precision=no` arrived as False; options
# read booleans as YAML 1.2 does: true and false only (any case), every other word stays a string.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                       list("tTfF"))


def yaml_load(text: str):
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass


def parse_overrides(pairs: list[str] | None) -> dict:
    """``["optim.lr=1e-4", "loss.lambda_map=0"]`` → nested dict with YAML-parsed values."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"override '{pair}' is not key=value")
        key, raw = pair.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{pair}': '{part}' is not a section")
        try:
            node[parts[-1]] = yaml_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{pair}': the value is not valid YAML ({' '.join(str(err).split())})") from None
    return out


def merge_dicts(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, section by section (nested dicts merge, everything else is replaced)."""
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = merge_dicts(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_config(cls, path: str | Path | None = None, overrides: list[str] | None = None):
    """Defaults ← file (YAML or JSON; a bare name is looked up in jepa4rec/configs) ← overrides."""
    data: dict = {}
    if path:
        p = Path(path)
        if not p.exists() and (CONFIG_DIR / f"{path}.yaml").exists():
            p = CONFIG_DIR / f"{path}.yaml"
        if not p.exists():
            raise FileNotFoundError(f"config file {path} not found (also looked in {CONFIG_DIR})")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{p}: not UTF-8 text (byte {err.start})", hint="save the config file as UTF-8") from None
        try:
            data = yaml_load(text) or {}
        except ConfigError as err:
            raise ConfigError(f"{p}: {err.message}", hint="fix the config file") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML ({' '.join(str(err).split())})", hint="fix the config file") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
    return config_from_dict(cls, data, overrides)


def config_from_dict(cls, data: dict, overrides: list[str] | None = None):
    """Defaults ← ``data`` (a config as a saved run records it) ← overrides."""
    # Each source is read in the current spelling first, so an old flat --set still overrides a new file.
    return build(cls, merge_dicts(current_spelling(cls, data), current_spelling(cls, parse_overrides(overrides))))


def config_from_cli(cls, args, shortcuts: tuple[str, ...] = ()):
    """The run config of a CLI: ``--config`` file, then ``--set`` pairs, then the named shortcut flags
    (``--output-dir`` and the like). A bad option raises :class:`ConfigError` before anything is written;
    :func:`jepa4rec.cli.command` reports it in one line (exit code 2)."""
    overrides = list(args.set)
    overrides += [f"{key}={getattr(args, key)}" for key in shortcuts if getattr(args, key, None)]
    return load_config(cls, args.config, overrides)
