"""Metrics of a run: CSV files in the run folder, and TensorBoard when it is installed.

Training rows go to ``metrics.csv``, validation rows to ``validation.csv`` (one column per
metric, ``step`` first). When a run resumes from step ``s``, rows after ``s`` left by the
interrupted run are dropped, so the files read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from typing import Any, Mapping

__all__ = ["MetricsLogger", "read_metrics"]


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a metrics CSV as dicts of floats (empty cells are NaN)."""
    with open(path, newline="") as handle:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(handle)]


class MetricsLogger:
    """Writes metric rows to CSV (and TensorBoard) on the main process; a no-op elsewhere.

    Args:
        run_dir: the run folder, or None to keep nothing.
        enabled: False on ranks other than 0.
        tensorboard: also write TensorBoard events to ``run_dir/tensorboard`` if the
            ``tensorboard`` package is installed.
        resume_step: drop rows with a larger step already in the files.
    """

    FILES = {"train": "metrics.csv", "validation": "validation.csv"}

    def __init__(
        self, run_dir: str | Path | None, *, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None
    ):
        self.run_dir = Path(run_dir) if run_dir is not None and enabled else None
        self._writer = None
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            for name in self.FILES.values():
                self._truncate(self.run_dir / name, resume_step)
        if tensorboard and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=resume_step)

    def path(self, kind: str) -> Path | None:
        return None if self.run_dir is None else self.run_dir / self.FILES.get(kind, f"{kind}.csv")

    def log(self, values: Mapping[str, Any], step: int, kind: str = "train") -> None:
        """Append one row ``{step, **values}`` to the ``kind`` file."""
        path = self.path(kind)
        if path is None:
            return
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        self._append(path, row)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"{kind}/{key}", float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @staticmethod
    def _append(path: Path, row: dict[str, Any]) -> None:
        header = _header(path)
        if header is not None and not set(row) <= set(header):
            rows = _rows(path)
            header = header + [k for k in row if k not in header]
            _write(path, header, rows)
        if header is None:
            header = list(row)
            _write(path, header, [])
        with open(path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=header).writerow(row)

    @staticmethod
    def _truncate(path: Path, step: int) -> None:
        header = _header(path)
        if header is None:
            return
        _write(path, header, [r for r in _rows(path) if r.get("step") and int(float(r["step"])) <= step])


def _header(path: Path) -> list[str] | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as handle:
        return next(csv.reader(handle), None)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
