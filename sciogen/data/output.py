"""Where generated samples are written: checked before sampling, written atomically.

``sciogen sample --out`` and the domains' writers go through these two functions, so a
screening script can trust what it finds: the destination is checked before any work
(known format, no silent overwrite, no writing through a symbolic link), and the file or
folder appears under its name only once it is complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["check_destination", "write_atomically", "FOLDER"]

#: in a domain's ``output_formats``: it can write a folder of one file per sample
FOLDER = "/"


def _suffix_of(path: Path, formats: Iterable[str]) -> str | None:
    name = path.name.lower()
    matches = [f for f in formats if f != FOLDER and name.endswith(f.lower())]
    return max(matches, key=len) if matches else None


def check_destination(out: str | Path, formats: Iterable[str] = (), *, force: bool = False,
                      name: str = "--out") -> Path:
    """Check ``out`` before sampling; returns it as a Path.

    ``formats``: the file suffixes the domain writes and :data:`FOLDER` when it writes
    folders (empty: not checked here). Refuses an unknown suffix (listing the known ones), a
    symbolic link, an existing file or folder unless ``force``, and a missing parent folder.
    ``name``: how messages call the destination (the option or argument that gave it).
    """
    path = Path(out).expanduser()
    formats = tuple(formats)
    if formats and _suffix_of(path, formats) is None:
        folder_ok = FOLDER in formats and (str(out).endswith(os.sep) or not path.suffix or path.is_dir())
        if not folder_ok:
            files = ", ".join(f for f in formats if f != FOLDER)
            choices = [f"a file ending in {files}"] if files else []
            if FOLDER in formats:
                choices.append("a folder (no suffix)")
            raise ValueError(f"{name} {out}: unknown output format {''.join(path.suffixes) or '(none)'!r}; "
                             f"use {' or '.join(choices)}")
    if path.is_symlink():
        raise ValueError(f"{name} {out} is a symbolic link; sciogen does not write through links (give the real path)")
    if path.exists() and not force:
        raise FileExistsError(f"{name} {out} already exists; pass --force to replace it, or choose another name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{name} {out}: the folder {path.parent} does not exist")
    return path


def write_atomically(write: Callable[[Any, Path], Path], samples: Any, path: str | Path) -> Path:
    """``write(samples, tmp)`` to a temporary name beside ``path``, then rename it to ``path``.

    The temporary name keeps the suffix, so writers that pick the format from it still do.
    A file or folder already at ``path`` (allowed by ``check_destination(force=True)``) is
    replaced only after the new one is complete. Nothing is left behind when ``write`` fails.
    """
    path = Path(path)
    folder = path.is_dir() or str(path).endswith(os.sep)  # a folder's temporary name has no suffix
    suffix = "".join(path.suffixes) if path.suffix and not folder else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}-{os.getpid()}-{uuid.uuid4().hex[:8]}-partial{suffix}")  # same suffix, or none
    try:
        written = Path(write(samples, tmp))
        if written.resolve() != tmp.resolve():
            raise RuntimeError(f"the writer wrote {written} instead of {tmp}")
        old = None
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.replaced")
            path.rename(old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    return path
