"""Finding and reading the suite's TOML data files (specs, profiles, cluster profiles) with one-line
errors, so every kind of file fails the same way."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from wrn.config import suggest


def locate(name_or_path: str | Path, folder: Path, noun: str, error: type[Exception], prefix: str = "") -> Path:
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


def read(path: Path, where: str, error: type[Exception]) -> dict[str, Any]:
    """The parsed TOML of `path`; unreadable or invalid files raise `error` naming `where`."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{where}: cannot read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise error(f"{where}: invalid TOML: {err}") from None
