"""Readers of GluonTS-format datasets and the benchmark data, without gluonts.

A GluonTS dataset folder holds ``metadata.json`` (or ``metadata/metadata.json``) with
``freq`` and ``prediction_length``, and ``train/`` and ``test/`` folders of JSON-lines files
(``*.json``, ``*.jsonl``, optionally ``.gz``), one entry per line::

    {"start": "1990-01-01", "target": [0.7, 0.71, "NaN", ...], "item_id": 0, ...}

The test set holds full series whose last ``prediction_length`` values are the truth;
rolling evaluations repeat each series with ends ``prediction_length`` apart
(:func:`sciogen.timeseries.representation.rolling_windows`).

``exchange_rate_nips`` (Lai et al. 2018, as packaged by Salinas et al. 2019 for GluonTS):
:func:`load_exchange_rate_nips` reads a local copy or downloads the original archive and
checks its SHA-256.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .representation import Series, TimeSeriesError, normalize_freq

__all__ = [
    "GluonTSDataset",
    "read_gluonts",
    "read_jsonlines",
    "load_exchange_rate_nips",
    "load_registered",
    "REGISTERED",
    "read_lstnet",
    "EXCHANGE_RATE_NIPS_URL",
    "EXCHANGE_RATE_NIPS_SHA256",
    "default_cache_dir",
]

#: the archive GluonTS's ``get_dataset("exchange_rate_nips")`` downloads
EXCHANGE_RATE_NIPS_URL = (
    "https://raw.githubusercontent.com/mbohlkeschneider/gluon-ts/mv_release/datasets/exchange_rate_nips.tar.gz"
)
EXCHANGE_RATE_NIPS_SHA256 = "83f3cf364ae7854b0a74ef9825c47b8314896de820de877fd466cdffd94027d1"
#: GluonTS's definition of the dataset (``_gp_copula_2019``): horizon 30, 5 rolling test windows
EXCHANGE_RATE_NIPS_HORIZON = 30


@dataclass
class GluonTSDataset:
    """A dataset in GluonTS's layout.

    Attributes:
        train: training series.
        test: test entries (full series; the last ``prediction_length`` values are the truth).
        freq: pandas frequency alias.
        prediction_length: forecast horizon.
        metadata: the raw ``metadata.json``.
        name: folder name.
    """

    train: list[Series]
    test: list[Series]
    freq: str
    prediction_length: int
    metadata: dict = field(default_factory=dict)
    name: str = ""

    @property
    def num_split_test_set(self) -> int:
        """Rolling windows per series in the test set (test entries / train series)."""
        return max(1, len(self.test) // max(1, len(self.train)))


def default_cache_dir() -> Path:
    """The dataset cache (:func:`sciogen.data.cache_dir`: ``$SCIOGEN_CACHE``, else the XDG cache)."""
    from sciogen.data import cache_dir

    return cache_dir()


def _parse_value(v) -> float:
    if v is None:
        return math.nan
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise TimeSeriesError(f"target value {v!r} is not a number (use NaN or null for missing values)") from None
    return float(v)


def _entry_to_series(entry: dict, freq: str, where: str) -> Series:
    if "target" not in entry or "start" not in entry:
        raise TimeSeriesError(f"{where}: a GluonTS entry needs 'start' and 'target', got keys {sorted(entry)}")
    target = entry["target"]
    if target and isinstance(target[0], list):
        raise TimeSeriesError(f"{where}: multivariate targets are not supported; split them into univariate entries")
    values = np.array([_parse_value(v) for v in target], dtype=np.float64)
    extra = {k: v for k, v in entry.items() if k not in ("target", "start", "item_id")}
    return Series(values, entry["start"], freq, entry.get("item_id"), extra)


def read_jsonlines(path: str | Path, freq: str) -> list[Series]:
    """The entries of one JSON-lines file (``.gz`` read transparently)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt") as handle:
        for i, line in enumerate(handle):
            if line.strip():
                out.append(_entry_to_series(json.loads(line), freq, f"{path}:{i + 1}"))
    return out


def _split_files(folder: Path) -> list[Path]:
    suffixes = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffixes) and p.name != "metadata.json")
    if not files:
        raise FileNotFoundError(f"{folder} holds no JSON-lines files (*.json, *.jsonl, optionally .gz)")
    return files


def read_gluonts(path: str | Path, *, freq: str | None = None, prediction_length: int | None = None) -> GluonTSDataset:
    """Read a GluonTS-format dataset folder (see the module docstring).

    ``freq`` / ``prediction_length`` override (or supply) the metadata's values.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no dataset folder at {root}")
    meta_file = next((p for p in (root / "metadata.json", root / "metadata" / "metadata.json") if p.is_file()), None)
    metadata: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file else {}
    freq = freq or metadata.get("freq")
    if freq is None:
        raise TimeSeriesError(f"{root}: no 'freq' in metadata.json; pass freq=")
    freq = normalize_freq(freq)
    prediction_length = prediction_length or metadata.get("prediction_length")
    if prediction_length is None:
        raise TimeSeriesError(f"{root}: no 'prediction_length' in metadata.json; pass prediction_length=")
    train = [s for f in _split_files(root / "train") for s in read_jsonlines(f, freq)]
    test = [s for f in _split_files(root / "test") for s in read_jsonlines(f, freq)] if (root / "test").is_dir() else []
    return GluonTSDataset(train, test, freq, int(prediction_length), metadata, root.name)


def load_exchange_rate_nips(path: str | Path | None = None, *, download: bool = False) -> GluonTSDataset:
    """GluonTS's ``exchange_rate_nips``: 8 business-daily exchange rates (Lai et al. 2018),
    prediction length 30, test = 8 series x 5 rolling windows.

    Args:
        path: a dataset folder (``metadata.json``, ``train/``, ``test/``) or the original
            ``.tar.gz``; default: the dataset registry's copy,
            ``<cache>/exchange_rate_nips/exchange_rate_nips.tar.gz`` (:func:`sciogen.data.cache_dir`),
            checked against its SHA-256.
        download: fetch the archive into the cache when no copy exists there (checksummed).
    """
    if path is not None:
        path = Path(path)
        return _read_tar(path, EXCHANGE_RATE_NIPS_HORIZON) if path.is_file() else read_gluonts(path)
    from sciogen.data import fetch

    name, file = "exchange_rate_nips", "exchange_rate_nips.tar.gz"
    folder = default_cache_dir() / name
    if (folder / file).is_file():
        folder = fetch(name, path=folder, files=[file])  # verifies the SHA-256
    elif (default_cache_dir() / file).is_file():  # where versions before the registry put it
        return _read_tar(default_cache_dir() / file, EXCHANGE_RATE_NIPS_HORIZON)
    elif download:
        folder = fetch(name, files=[file])
    else:
        raise FileNotFoundError(
            f"the dataset exchange_rate_nips is not in the dataset cache ({folder / file}); run again with --download "
            "(a checksummed 0.7 MB download; Python: download=True), or train on your own data with --data PATH"
        )
    return _read_tar(folder / file, EXCHANGE_RATE_NIPS_HORIZON)


#: the registered time-series datasets that load as a GluonTSDataset, by name
REGISTERED = {"exchange_rate_nips": load_exchange_rate_nips}


def load_registered(name: str, *, download: bool = False) -> GluonTSDataset:
    """A registered dataset by name (:data:`REGISTERED`), from the cache or downloaded."""
    if name not in REGISTERED:
        raise ValueError(f"unknown time-series dataset {name!r}; registered: {', '.join(sorted(REGISTERED))}")
    return REGISTERED[name](download=download)


def _read_tar(archive: Path, prediction_length: int | None = None, required: bool = True) -> GluonTSDataset:
    """Read the GluonTS archive layout (metadata/metadata.json, train/*.json, test/*.json).

    ``prediction_length`` is used when the metadata has none; without either, an error when
    ``required``, else 0 (unknown)."""
    parts: dict[str, list[tuple[str, bytes]]] = {"metadata": [], "train": [], "test": []}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            bits = Path(member.name).parts
            split = next((b for b in bits if b in parts), None)
            if split is not None and not Path(member.name).name.startswith("._"):
                parts[split].append((member.name, tar.extractfile(member).read()))
    if not parts["metadata"] or not parts["train"]:
        raise TimeSeriesError(f"{archive} does not have the GluonTS layout (metadata/, train/, test/)")
    metadata = json.loads(parts["metadata"][0][1])
    # GluonTS's own archives say "freq"; the GP-copula ("*_nips") ones say "time_granularity"
    # and leave the horizon to the dataset's definition (passed by the caller)
    freq = normalize_freq(metadata.get("freq") or metadata.get("time_granularity"))
    prediction_length = metadata.get("prediction_length") or prediction_length
    if prediction_length is None and required:
        raise TimeSeriesError(f"{archive}: no prediction_length in its metadata; pass prediction_length=")

    def read(split):
        out = []
        for name, raw in sorted(parts[split]):
            text = gzip.decompress(raw).decode() if name.endswith(".gz") else raw.decode()
            for i, line in enumerate(io.StringIO(text)):
                if line.strip():
                    out.append(_entry_to_series(json.loads(line), freq, f"{archive}:{name}:{i + 1}"))
        return out

    name = archive.name.split(".")[0]
    return GluonTSDataset(read("train"), read("test"), freq, int(prediction_length or 0), metadata, name)


def read_lstnet(path: str | Path, freq: str = "D", start: str = "1990-01-01") -> list[Series]:
    """LSTNet's raw matrix files (Lai et al. 2018), e.g. ``exchange_rate.txt.gz``: one row per
    time step, one comma-separated column per series. Returns one :class:`Series` per column
    (item ids 0, 1, ...)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        matrix = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    return [Series(matrix[:, j], start, freq, j) for j in range(matrix.shape[1])]
