"""Configuration files of the ``jaxinfo`` batch commands: schema, parsing and validation.

A configuration is a TOML file (parsed by the standard library's ``tomllib``) with one table
per concern — ``[data]``, ``[model]``, ``[dynamics]``, ``[sui]``, ``[output]`` — plus one table
for the command (``[detect]``/``[corruption]``, ``[summarize]``, ``[subpopulations]``,
``[sources]``). Every key has a type and a default (:data:`SCHEMAS`); a file only lists what it
changes. ``--set table.key=value`` overrides a key, the value read as a TOML value (``0.1``,
``[4, 9]``, ``true``, ``inf``) or, for a string key, as the text itself.

Everything is checked before any work starts — unknown tables or keys, wrong types, values
out of range, files that do not exist, ``module:function`` models that cannot be imported —
and the first problem raises :class:`ConfigError`, whose message is one line naming the key
and what is expected (the command line prints it and exits with status 2, writing nothing).
This module imports only the standard library (except to check a ``module:function`` model).
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import os
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Field", "SCHEMAS", "COMMANDS", "load_config", "parse_override",
           "defaults", "to_toml"]


class ConfigError(ValueError):
    """A configuration problem; ``str(err)`` is one line naming the key and what is expected."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One configuration key.

    Attributes:
      kind: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"time"`` (a number ≥ 0 or
        ``"inf"``/``inf``), ``"list[int]"``, ``"list[float]"``, ``"list[str]"``,
        ``"list[time]"`` or ``"table"`` (free-form keyword arguments).
      default: value when the key is absent.
      help: what the key means (shown in errors).
      choices: allowed values (strings).
      minimum: smallest allowed number (inclusive) for numbers and their lists.
      positive: numbers must be > 0.
      maximum: largest allowed number (inclusive).
    """

    kind: str
    default: Any
    help: str = ""
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False


_EXPECT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
           "time": 'a number >= 0 or "inf"', "list[int]": "a list of integers",
           "list[float]": "a list of numbers", "list[str]": "a list of strings",
           "list[time]": 'a list of numbers >= 0 or "inf"', "table": "a table of keyword arguments"}

DATA = {
    "name": Field("str", "mnist", 'dataset: "mnist" or "digits" (bundled), a .npz file with x '
                  'and y, "tfds:NAME" (with data_dir) or "idx:NAME" (e.g. idx:fashion_mnist)'),
    "classes": Field("list[int]", [4, 9], "labels to keep ([] = all), relabelled 0..C-1"),
    "size": Field("int", 14, "image side for mnist/idx/tfds (28 or 14)", minimum=1),
    "n": Field("int", 500, "training samples (0 = all but n_test)", minimum=0),
    "n_test": Field("int", 500, "held-out samples (reference set X* and test accuracy)",
                    minimum=0),
    "seed": Field("int", 0, "seed of the train/held-out split"),
    "data_dir": Field("str", "", "data directory for tfds:/idx: datasets"),
    "split": Field("str", "train", "split of tfds:/idx: datasets"),
    "reference": Field("str", "held_out", "reference inputs X* of functional SI: held_out or "
                       "train (the other training samples)", choices=("held_out", "train")),
}
MODEL = {
    "kind": Field("str", "mlp", '"mlp", "cnn" or "package.module:function" returning a Flax '
                  "module (called with [model.kwargs]; its output must have 1 unit for two "
                  "classes, else one per class)"),
    "width": Field("int", 1024, "hidden width of the MLP", minimum=1),
    "channels": Field("list[int]", [16, 32], "channels of the CNN's two convolutions", minimum=1),
    "seed": Field("int", 0, "seed of the initial weights w0"),
    "kwargs": Field("table", {}, "keyword arguments of a module:function model"),
}
DYNAMICS = {
    "lr": Field("float", 0.04, "learning rate of full-batch GD on the averaged MSE",
                positive=True),
    "t": Field("time", 1000, 'training steps (or time if continuous); "inf" = to convergence'),
    "continuous": Field("bool", False, "gradient flow instead of discrete steps"),
    "weight_decay": Field("float", 0.0, "decay towards the initial weights", minimum=0),
}
SUI = {
    "sigma": Field("float", 1.0, "weight smoothing σ", positive=True),
    "sigma_f": Field("float", 1.0, "output smoothing σ_f", positive=True),
    "reduction": Field("str", "mean", "mean or sum over the reference inputs",
                       choices=("mean", "sum")),
    "method": Field("str", "auto", "leave-one-out solver",
                    choices=("auto", "schur", "lanczos", "exact")),
    "chunk_size": Field("int", 0, "samples per checkpointed chunk (0 = automatic)", minimum=0),
    "batch_size": Field("int", 0, "samples per NTK block (0 = all at once)", minimum=0),
    "float64": Field("bool", False, "compute the kernels in float64 too"),
}
OUTPUT = {
    "figures": Field("bool", True, "write PNG figures"),
    "progress": Field("bool", True, "progress bars (redrawn at most every 30 s in a log file)"),
    "top": Field("int", 10, "most / least informative samples shown", minimum=1),
}
CORRUPTION = {
    "kind": Field("str", "label_noise", "label_noise, fgsm or pgd",
                  choices=("label_noise", "fgsm", "pgd")),
    "fraction": Field("float", 0.1, "fraction of training samples corrupted", minimum=0,
                      maximum=1),
    "eps": Field("float", 0.1, "L∞ radius of the attacks (input units)", minimum=0),
    "steps": Field("int", 10, "PGD steps", minimum=1),
    "step_size": Field("float", 0.0, "PGD step (0 = 2.5·eps/steps)", minimum=0),
    "seed": Field("int", 0, "seed of the corruption and of the random baseline"),
}
DETECT = {
    "times": Field("list[time]", [1000, "inf"], 'times t at which the scores are compared '
                   '("inf" = the network trained to convergence)'),
}
SUMMARIZE = {
    "fractions": Field("list[float]", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                       "fractions of training samples removed", minimum=0, maximum=0.99),
    "strategies": Field("list[str]", ["least_informative", "most_informative",
                                      "least_informative_recomputed", "random"],
                        "removal orders",
                        choices=("least_informative", "most_informative",
                                 "least_informative_recomputed", "random")),
    "seeds": Field("int", 5, "random removals", minimum=1),
    "chunk_size": Field("int", 8, "networks retrained per compiled call", minimum=1),
}
SUBPOPULATIONS = {
    "cls": Field("int", 1, "the subsampled class (after relabelling)", minimum=0),
    "fractions": Field("list[float]", [1.0, 0.5, 0.2, 0.1, 0.05],
                       "fractions of the class kept", positive=True, maximum=1),
    "seed": Field("int", 0, "seed of the subsampling"),
}
SOURCES = {
    "n_per_source": Field("int", 150, "samples per source", minimum=2),
    "noisy_fraction": Field("float", 0.5, "flipped labels in the noisy-label MNIST source",
                            minimum=0, maximum=1),
    "seed": Field("int", 0, "seed of the sources and of their mixing"),
}

PROTOCOL = {
    "preset": Field("str", "authors-epochs", "authors-epochs (their schedule in epochs of this "
                    "training set), authors-steps (their step numbers, as on 50,000 images) or "
                    "v01 (what jaxinfo 0.1 ran)",
                    choices=("authors-epochs", "authors-steps", "v01")),
    "dataset": Field("str", "mnist", "mnist (bundled 5,000), fashion_mnist (full size, IDX: "
                     "make data) or digits", choices=("mnist", "fashion_mnist", "digits")),
    "n_train": Field("int", 0, "training images (0 = the preset's: bundled MNIST 4,000, "
                     "Fashion-MNIST 50,000)", minimum=0),
    "fields": Field("table", {}, "other fields of jaxinfo.experiments.memorization.Protocol, "
                    'e.g. {binning = "per_neuron", mi_estimator = "binned", n_eval = 1000}'),
}
SWEEP = {
    "modes": Field("list[str]", ["colored", "shuffled"], "colored and/or shuffled",
                   choices=("colored", "shuffled")),
    "levels": Field("list[float]", [], "corruption levels e / beta ([] = 0, 0.125, ..., 0.5)",
                    minimum=0, maximum=1),
    "seeds": Field("int", 5, "networks per level, trained together", minimum=1),
    "seed": Field("int", 0, "seed of the constructions and initializations"),
}

_COMMON = {"data": DATA, "model": MODEL, "dynamics": DYNAMICS, "sui": SUI, "output": OUTPUT}
#: ``{command: {table: {key: Field}}}``.
SCHEMAS: dict[str, dict[str, dict[str, Field]]] = {
    "sui": dict(_COMMON),
    "detect": dict(_COMMON, corruption=CORRUPTION, detect=DETECT),
    "summarize": dict(_COMMON, summarize=SUMMARIZE),
    "subpopulations": dict(_COMMON, subpopulations=SUBPOPULATIONS),
    "sources": dict(_COMMON, sources=SOURCES),
    "memorization": dict(protocol=PROTOCOL, sweep=SWEEP, output=OUTPUT),
}
COMMANDS = tuple(SCHEMAS)


def defaults(command: str) -> dict:
    """The configuration of ``command`` with every key at its default."""
    return {t: {k: copy.deepcopy(f.default) for k, f in keys.items()}
            for t, keys in SCHEMAS[command].items()}


def _describe(v: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)
    text = repr(v) if not isinstance(v, dict) else "{...}"
    return f"{text} ({kind})"


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _scalar_ok(kind: str, v: Any) -> bool:
    if kind == "int":
        return _is_int(v)
    if kind == "float":
        return _is_number(v) and math.isfinite(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "time":
        return (_is_number(v) and (math.isfinite(v) or v == math.inf) and v >= 0) or v == "inf"
    raise AssertionError(kind)


def _check_value(key: str, f: Field, v: Any) -> Any:
    """Returns the normalised value (``"inf"`` → ``math.inf`` for times) or raises."""
    expect = _EXPECT[f.kind]
    if f.kind == "table":
        if not isinstance(v, dict):
            raise ConfigError(f"{key}: expected {expect}, got {_describe(v)}")
        return v
    if f.kind.startswith("list["):
        inner = f.kind[5:-1]
        if not isinstance(v, list) or not all(_scalar_ok(inner, e) for e in v):
            raise ConfigError(f"{key}: expected {expect}, got {_describe(v)}")
        items = v
    else:
        if not _scalar_ok(f.kind, v):
            raise ConfigError(f"{key}: expected {expect}, got {_describe(v)}")
        items = [v]
    for e in items:
        if f.choices is not None and e not in f.choices:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, f.choices))}, "
                              f"got {e!r}")
        if _is_number(e):
            if f.positive and not e > 0:
                raise ConfigError(f"{key}: expected a number > 0, got {e!r}")
            if f.minimum is not None and e < f.minimum:
                raise ConfigError(f"{key}: expected a number >= {f.minimum:g}, got {e!r}")
            if f.maximum is not None and e > f.maximum:
                raise ConfigError(f"{key}: expected a number <= {f.maximum:g}, got {e!r}")
    if f.kind == "time":
        return math.inf if v == "inf" else v
    if f.kind == "list[time]":
        return [math.inf if e == "inf" else e for e in v]
    if f.kind == "float":
        return float(v)
    if f.kind == "list[float]":
        return [float(e) for e in v]
    return v


def parse_override(command: str, text: str) -> tuple[str, str, Any]:
    """``"table.key=value"`` → ``(table, key, value)``, the value typed by the schema."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected table.key=value")
    dotted, raw = text.split("=", 1)
    dotted = dotted.strip()
    table, _, key = dotted.partition(".")
    schema = SCHEMAS[command]
    if table not in schema or not key:
        raise ConfigError(f"--set {dotted}: unknown key (tables of {command!r}: "
                          f"{', '.join(schema)})")
    if key not in schema[table]:
        raise ConfigError(f"--set {dotted}: unknown key (known keys in [{table}]: "
                          f"{', '.join(schema[table])})")
    f = schema[table][key]
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if f.kind == "str" and not isinstance(value, str):
        value = raw
    if f.kind == "time" and raw in ("inf", '"inf"'):
        value = "inf"
    return table, key, value


def _check_semantics(command: str, cfg: dict, base: Path, overridden: set) -> None:
    """Checks that need more than one key or the file system. Relative file names are
    relative to the configuration file's folder (``base``), or to the working directory when
    given by ``--set`` (``overridden`` holds those keys)."""
    if command == "memorization":
        _check_protocol(cfg)
        return
    name = cfg["data"]["name"]
    if name.endswith(".npz"):
        folder = Path.cwd() if "data.name" in overridden else base
        path = Path(name) if Path(name).is_absolute() else folder / name
        if not path.is_file():
            raise ConfigError(f"data.name: file {str(path)!r} does not exist (expected a .npz "
                              "file with arrays x and y)")
        cfg["data"]["name"] = str(path.resolve())
    elif name.startswith(("tfds:", "idx:")):
        if not name.split(":", 1)[1]:
            raise ConfigError(f"data.name: expected a dataset name after the prefix, got {name!r}")
        d = cfg["data"]["data_dir"]
        folder = Path.cwd() if "data.data_dir" in overridden else base
        if d and not (Path(d) if Path(d).is_absolute() else folder / d).is_dir():
            raise ConfigError(f"data.data_dir: directory {d!r} does not exist")
        if d and not Path(d).is_absolute():
            cfg["data"]["data_dir"] = str((folder / d).resolve())
    elif name not in ("mnist", "digits"):
        raise ConfigError(f"data.name: expected mnist, digits, a .npz file, tfds:NAME or "
                          f"idx:NAME, got {name!r}")
    if name == "mnist" and cfg["data"]["size"] not in (14, 28):
        raise ConfigError(f"data.size: expected 14 or 28 for mnist, got {cfg['data']['size']}")
    if any(c < 0 for c in cfg["data"]["classes"]):
        raise ConfigError("data.classes: expected labels >= 0")
    kind = cfg["model"]["kind"]
    if kind not in ("mlp", "cnn"):
        if ":" not in kind:
            raise ConfigError(f'model.kind: expected "mlp", "cnn" or "package.module:function", '
                              f"got {kind!r}")
        mod, _, fn = kind.partition(":")
        try:
            module = importlib.import_module(mod)
        except ImportError as err:
            raise ConfigError(f"model.kind: cannot import module {mod!r} ({err})") from None
        if not callable(getattr(module, fn, None)):
            raise ConfigError(f"model.kind: module {mod!r} has no function {fn!r}")
    if command in ("summarize", "detect") and cfg["dynamics"]["t"] == math.inf \
            and (command == "summarize" or cfg["corruption"]["kind"] != "label_noise"):
        raise ConfigError("dynamics.t: expected a finite number of steps (the network is "
                          "retrained for t steps), got inf")
    if command in ("summarize", "detect") and cfg["dynamics"]["continuous"]:
        raise ConfigError("dynamics.continuous: expected false (the real network is retrained "
                          "by discrete GD)")
    if cfg["data"]["reference"] == "held_out" and cfg["data"]["n_test"] < 1 \
            and command != "sources":
        raise ConfigError("data.n_test: expected >= 1 with data.reference = \"held_out\"")
    if command == "summarize" and cfg["data"]["n_test"] < 1:
        raise ConfigError("data.n_test: expected >= 1 (the held-out accuracy needs test samples)")


def memorization_protocol(cfg: dict):
    """The :class:`jaxinfo.experiments.memorization.Protocol` of a memorization config."""
    from jaxinfo.experiments.memorization import Protocol

    p = cfg["protocol"]
    fields = dict(p["fields"], dataset=p["dataset"])
    if p["preset"] == "v01":
        return Protocol.jaxinfo_v01(**fields)
    n = p["n_train"] or {"mnist": 4000, "fashion_mnist": 50_000, "digits": 1437}[p["dataset"]]
    return Protocol.authors(n, schedule=p["preset"].split("-")[1], **fields)


def _check_protocol(cfg: dict) -> None:
    import dataclasses as dc

    from jaxinfo.experiments.memorization import Protocol

    known = {f.name for f in dc.fields(Protocol)} - {"dataset"}
    for key in cfg["protocol"]["fields"]:
        if key not in known:
            raise ConfigError(f"protocol.fields.{key}: unknown field (expected one of "
                              f"{', '.join(sorted(known))})")
    try:
        memorization_protocol(cfg)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"protocol.fields: {err}") from None


def load_config(command: str, path: str | os.PathLike, overrides: list[str] = ()) -> dict:
    """Reads, overrides and validates the configuration of ``command``.

    Args:
      command: one of :data:`COMMANDS`.
      path: the TOML file. Relative file names inside it are relative to its folder; those
        given by ``overrides`` are relative to the working directory.
      overrides: ``"table.key=value"`` strings (``--set``), applied in order after the file.

    Returns:
      The full configuration ``{table: {key: value}}`` with defaults filled in, times as
      numbers (``math.inf`` for ``"inf"``) and file names made absolute.

    Raises:
      ConfigError: the first problem found (one line naming the key and what is expected).
    """
    if command not in SCHEMAS:
        raise ConfigError(f"unknown command {command!r} (expected one of {', '.join(COMMANDS)})")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist (expected a TOML file)")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: invalid TOML ({str(err).splitlines()[0]})") from None
    schema = SCHEMAS[command]
    cfg = defaults(command)
    for table, values in raw.items():
        if table not in schema:
            raise ConfigError(f"{table}: unknown table (tables of {command!r}: "
                              f"{', '.join(schema)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{table}: expected a table [{table}], got {_describe(values)}")
        for key, v in values.items():
            if key not in schema[table]:
                raise ConfigError(f"{table}.{key}: unknown key (known keys in [{table}]: "
                                  f"{', '.join(schema[table])})")
            cfg[table][key] = v
    overridden = set()
    for text in overrides:
        table, key, v = parse_override(command, text)
        cfg[table][key] = v
        overridden.add(f"{table}.{key}")
    for table, keys in schema.items():
        for key, f in keys.items():
            cfg[table][key] = _check_value(f"{table}.{key}", f, cfg[table][key])
    _check_semantics(command, cfg, path.resolve().parent, overridden)
    return cfg


def to_toml(cfg: dict) -> str:
    """A configuration as TOML text (``math.inf`` written as ``"inf"``)."""
    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and math.isinf(v):
            return '"inf"'
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(fmt(e) for e in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {fmt(e)}" for k, e in v.items()) + "}"
        return repr(v)

    out = []
    for table, values in cfg.items():
        out.append(f"[{table}]")
        out += [f"{k} = {fmt(v)}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)
