"""What the suite's TOML files may contain, checked one way for all of them: specs, run profiles and
cluster profiles.

Every check raises an error whose message is one line, ``<file>: <field>: <value>: <what is
allowed>`` (`fail`), so a typo anywhere is reported the same way, with the closest known key
suggested. Values are checked for their *type* here, field by field; the *range* of a run-config
value depends on the run's other fields and is checked once, by `wrn.config.resolve`, when the runs
are planned.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from wrn.config import RunConfig
from wrn.errors import UserError, suggest

REPO_ROOT = Path(__file__).resolve().parents[1]

CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))
# `seed` comes from the spec's `seeds` (or --seeds), never from a config layer.
SETTABLE_FIELDS = tuple(name for name in CONFIG_FIELDS if name != "seed")
# Partial configs that select runs (excludes, baselines, figure panels) may also name the network.
SELECT_FIELDS = SETTABLE_FIELDS + ("label",)
_ANNOTATIONS = {f.name: str(f.type).replace(" | None", "") for f in fields(RunConfig)}


class SpecError(UserError):
    """A spec, run profile or --set override that is not allowed."""


def fail(where: str, field: str, value: Any, allowed: str, error: type[UserError] = SpecError) -> UserError:
    """The one message format: '<where>: <field>: <value>: <what is allowed>'."""
    return error(f"{where}: {field}: {value!r}: {allowed}")


def display_path(path: Path) -> str:
    """`path` relative to the repository when it is inside it (shorter messages), else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------------
# Files


def locate(name_or_path: str | Path, folder: Path, noun: str, error: type[UserError] = SpecError,
           prefix: str = "") -> Path:
    """A shipped file by name (`folder`/<name>.toml) or a user's file by path (anything ending in
    .toml or containing a slash); an unknown name lists the shipped ones."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or isinstance(name_or_path, Path):
        path = Path(text)
        if not path.is_file():
            raise error(f"{prefix}{text}: no such {noun} file")
        return path
    path = folder / f"{text}.toml"
    if not path.is_file():
        names = sorted(p.stem for p in folder.glob("*.toml"))
        raise error(f"{prefix}unknown {noun} {text!r}{suggest(text, names)}; the {noun}s in "
                    f"{folder.name}/ are: {', '.join(names)} (or give the path of a .toml file)")
    return path


def read_toml(path: Path, error: type[UserError] = SpecError) -> dict[str, Any]:
    """The parsed TOML of `path`; an unreadable or invalid file raises `error` naming it."""
    where = display_path(path)
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{where}: cannot read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise error(f"{where}: invalid TOML: {err}") from None


# --------------------------------------------------------------------------------------------------
# Values

# annotation (without "| None") -> (check, what a value must be)
TYPE_CHECKS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "float | bool": (lambda v: isinstance(v, (int, float)), "a probability in [0, 1), or true/false"),
    "tuple[int, ...]": (lambda v: isinstance(v, list) and all(isinstance(m, int) and not isinstance(m, bool)
                                                              for m in v), "a list of integers, e.g. [60, 120, 160]"),
    "tuple[str, ...]": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a list of strings"),
    "dict[str, Any]": (lambda v: isinstance(v, dict), "a table"),
}


def check_type(where: str, field: str, value: Any, annotation: str, error: type[UserError] = SpecError) -> None:
    """`value` must be of the dataclass field type `annotation` (a key of `TYPE_CHECKS`)."""
    check, what = TYPE_CHECKS[annotation]  # a KeyError here means a dataclass grew a new type
    if not check(value):
        raise fail(where, field, value, f"expected {what}", error)


def check_value(where: str, dotted: str, field: str, value: Any) -> None:
    """A value for run-config field `field` (or "label") of the right type."""
    if field == "label":
        if not isinstance(value, str):
            raise fail(where, dotted, value, "expected a network label, e.g. WRN-28-10")
        return
    check_type(where, dotted, value, _ANNOTATIONS[field])


def check_field_name(where: str, prefix: str, field: Any, known: tuple[str, ...]) -> None:
    if field in known:
        return
    if field == "seed":
        raise fail(where, prefix, field, "seeds are set by the top-level `seeds` (or --seeds), not per config")
    hint = suggest(str(field), known) or " (see wrn/config.py RunConfig)"
    raise fail(where, prefix, field, f"unknown config field{hint}")


def check_keys(where: str, prefix: str, raw: dict[str, Any], known: tuple[str, ...],
               error: type[UserError] = SpecError) -> None:
    """Every key of table `raw` must be one of `known`."""
    for key in raw:
        if key not in known:
            raise fail(where, f"{prefix}{key}", raw[key], f"unknown key{suggest(key, known)}; allowed: "
                                                          f"{', '.join(known)}", error)


def check_choice(where: str, field: str, value: Any, allowed: tuple[str, ...],
                 error: type[UserError] = SpecError) -> None:
    if value not in allowed:
        raise fail(where, field, value, f"allowed: {', '.join(allowed)}{suggest(str(value), allowed)}", error)


def check_partial(where: str, prefix: str, raw: Any, known: tuple[str, ...] = SETTABLE_FIELDS,
                  non_empty: bool = False) -> dict[str, Any]:
    """A partial RunConfig: known field names, each value of the field's type."""
    raw = expect_table(where, prefix, raw)
    if non_empty and not raw:
        raise fail(where, prefix, raw, "expected at least one config field")
    for field, value in raw.items():
        check_field_name(where, prefix, field, known)
        check_value(where, f"{prefix}.{field}", field, value)
    return dict(raw)


def expect_str(where: str, field: str, value: Any, error: type[UserError] = SpecError) -> None:
    if not isinstance(value, str) or not value.strip():
        raise fail(where, field, value, "expected a non-empty string", error)


def expect_table(where: str, field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(where, field, value, "expected a table (key = value pairs)")
    return value


def expect_list(where: str, field: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise fail(where, field, value, "expected a list (an array of tables)")
    return value


def parse_seeds(where: str, field: str, value: Any) -> tuple[int, ...]:
    """An int n -> (0, ..., n-1); a list -> its distinct non-negative ints."""
    allowed = "expected an integer n >= 1 (seeds 0..n-1) or a non-empty list of distinct integers >= 0"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise fail(where, field, value, allowed)
        return tuple(range(value))
    if (not isinstance(value, list) or not value or len(set(value)) != len(value)
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value)):
        raise fail(where, field, value, allowed)
    return tuple(value)


TIMING_KEYS = ("batch_size", "warmup", "repeats")
_TIMING_MINIMUM = {"batch_size": 1, "warmup": 0, "repeats": 1}


def parse_timing(where: str, prefix: str, raw: Any, required: bool) -> dict[str, int]:
    """[timing] of a spec (all three keys) or of a profile (warmup/repeats overrides)."""
    raw = expect_table(where, prefix, raw)
    known = TIMING_KEYS if required else ("warmup", "repeats")
    check_keys(where, prefix + ".", raw, known)
    for key in known:
        if key not in raw:
            if required:
                raise fail(where, f"{prefix}.{key}", None, f"missing: [timing] needs {', '.join(known)}")
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < _TIMING_MINIMUM[key]:
            raise fail(where, f"{prefix}.{key}", value, f"expected an integer >= {_TIMING_MINIMUM[key]}")
    return dict(raw)
