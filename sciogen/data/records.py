"""A user's own data files: finding them, and reporting the records that cannot be read.

Every domain reads users' files through the same two pieces, so that nothing is dropped
silently and every error names the item:

- :func:`expand_paths` turns ``--data`` (a file, a folder searched recursively, or a glob)
  into the list of files with the suffixes a domain reads;
- :class:`RecordLog` collects the records that could not be used (file, record index or
  line, reason); :meth:`RecordLog.require` refuses to train on too few valid records, and
  :meth:`RecordLog.write` leaves the list as ``skipped.csv`` in the run folder.
"""

from __future__ import annotations

import csv
import glob
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

__all__ = ["SkippedRecord", "RecordLog", "expand_paths", "SKIPPED_FILE"]

SKIPPED_FILE = "skipped.csv"
_SHOWN = 5


@dataclass(frozen=True)
class SkippedRecord:
    """One record left out: ``source`` (file), ``index`` (line / record / row) and ``reason``."""

    source: str
    index: int | str
    reason: str

    def __str__(self) -> str:
        return f"{self.source} [{self.index}]: {self.reason}"


class RecordLog:
    """The records of a user's data that were kept and those that were left out.

    >>> log = RecordLog()
    >>> log.skip("my.smi", 3, "RDKit cannot parse 'C1CC'")
    >>> log.kept = 2
    >>> log.summary("molecules")
    'kept 2 molecules, skipped 1 (my.smi [3]: RDKit cannot parse ...'
    """

    def __init__(self) -> None:
        self.skipped: list[SkippedRecord] = []
        self.kept = 0

    def __len__(self) -> int:
        return len(self.skipped)

    def skip(self, source: str | Path, index: int | str, reason: str) -> None:
        """Record that item ``index`` of ``source`` was left out, and why."""
        self.skipped.append(SkippedRecord(str(source), index, str(reason)))

    def examples(self, k: int = _SHOWN) -> str:
        """The first ``k`` skipped records, one per line."""
        shown = "\n".join(f"  {r}" for r in self.skipped[:k])
        more = len(self.skipped) - k
        return shown + (f"\n  ... and {more} more" if more > 0 else "")

    def summary(self, what: str = "records") -> str:
        """One line: how many were kept and skipped, with the first reason."""
        line = f"kept {self.kept} {what}"
        if self.skipped:
            line += f", skipped {len(self.skipped)} ({self.skipped[0]}"
            line += ", ...)" if len(self.skipped) > 1 else ")"
        return line

    def require(self, minimum: int, what: str = "records", purpose: str = "to train") -> None:
        """Raise a ValueError when fewer than ``minimum`` records were kept."""
        if self.kept >= minimum:
            return
        message = f"only {self.kept} usable {what} (at least {minimum} are needed {purpose})"
        if self.skipped:
            message += f"; {len(self.skipped)} could not be used:\n{self.examples()}"
        raise ValueError(message)

    def write(self, folder: str | Path) -> Path | None:
        """Write ``skipped.csv`` (source, index, reason) to ``folder``; None when nothing was skipped.

        An older list in the folder is replaced (written to a temporary file, then renamed).
        """
        path = Path(folder) / SKIPPED_FILE
        if not self.skipped:
            if path.exists():
                path.unlink()
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["source", "index", "reason"])
            writer.writerows((r.source, r.index, r.reason) for r in self.skipped)
        tmp.replace(path)
        return path

    def report(self, folder: str | Path | None, what: str = "records", stream=None) -> Path | None:
        """Print :meth:`summary` (when something was skipped) and :meth:`write` to ``folder``."""
        if not self.skipped:
            if folder is not None:
                self.write(folder)
            return None
        path = self.write(folder) if folder is not None else None
        where = f"; the list is in {path}" if path is not None else ""
        print(f"sciogen: {self.summary(what)}{where}", file=stream or sys.stderr)
        return path


def expand_paths(data: str | Path | Iterable[str | Path], suffixes: Iterable[str], what: str = "files") -> list[Path]:
    """The files named by ``data``: a file, a folder (searched recursively), a glob, or a list of these.

    Only names ending with one of ``suffixes`` (e.g. ``(".nii.gz", ".nii")``, case-insensitive)
    are taken from folders and globs; a file named directly must have one too. Hidden files
    (``.name``) are skipped. Raises FileNotFoundError / ValueError naming the path and the
    accepted suffixes when nothing is found. Sorted, without duplicates.
    """
    suffixes = tuple(s.lower() for s in suffixes)
    items = [data] if isinstance(data, (str, Path)) else list(data)
    if not items:
        raise ValueError(f"no {what} given")
    found: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text).expanduser()
        if any(ch in text for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
            files = [m for m in matches if m.is_file() and _accepted(m, suffixes)]
            if not files:
                raise FileNotFoundError(f"the pattern {text!r} matches no {what} ending in {', '.join(suffixes)}")
            found += files
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _accepted(p, suffixes))
            if not files:
                raise FileNotFoundError(f"the folder {path} holds no {what} ending in {', '.join(suffixes)}")
            found += files
        elif path.is_file():
            if not path.name.lower().endswith(suffixes):
                raise ValueError(f"{path}: unknown file type; {what} end in {', '.join(suffixes)}")
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return sorted(dict.fromkeys(found))


def _accepted(path: Path, suffixes: tuple[str, ...]) -> bool:
    return not any(part.startswith(".") for part in path.parts[-1:]) and path.name.lower().endswith(suffixes)
