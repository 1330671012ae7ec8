"""The dataset registry, read from the dataset cards shipped with the package.

A card is one YAML file in ``sciogen/datasets/`` (also reachable as ``datasets/`` at the
repository root) describing one benchmark::

    name: perov_5
    domain: crystals
    title: Perov-5 (CDVAE split)
    description: ...
    homepage: https://github.com/txie-93/cdvae
    license: MIT (CDVAE repository); ...
    citation: |
      @article{...}
    splits: {train: "11,356 structures", val: "3,787", test: "3,785"}
    files:
      - name: val.csv
        url: https://raw.githubusercontent.com/txie-93/cdvae/<commit>/data/perov_5/val.csv
        sha256: 326f4012...          # null when nobody has verified the official file
      - name: train.csv              # a file inside an archive:
        url: https://.../some.whl
        member: pkg/data/train.csv
        archive_sha256: ...

``sha256`` is the SHA-256 of the file as the loader stores it; ``archive_sha256`` that of
the downloaded archive when ``member`` names a file inside a zip / tar; ``git_blob_sha1``
the Git object id of a file served from a pinned commit of a Git repository (what
``git ls-tree`` lists: SHA-1 of ``b"blob <size>\0" + content``), used when the file itself
was not available to compute its SHA-256 but the repository's tree was. A null checksum
means unknown: :func:`sciogen.data.fetch` then refuses to download unless asked to accept
an unverified file. Checksums are only ever computed from real copies of the files.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass, field
from functools import lru_cache

import yaml

from sciogen.config import ConfigError, from_dict

__all__ = ["DatasetCard", "DatasetFile", "cards", "card", "dataset_names"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def _check_sha(value: str | None, key: str) -> None:
    if value is not None and not _SHA256.match(value):
        raise ConfigError(f"{key} must be 64 lowercase hex digits or null, got {value!r}")


@dataclass
class DatasetFile:
    """One file of a dataset: where to get it and how to check it."""

    name: str
    url: str
    sha256: str | None = None
    member: str | None = None
    archive_sha256: str | None = None
    git_blob_sha1: str | None = None
    note: str = ""

    def __post_init__(self):
        _check_sha(self.sha256, f"files[{self.name}].sha256")
        _check_sha(self.archive_sha256, f"files[{self.name}].archive_sha256")
        if self.git_blob_sha1 is not None and not _SHA1.match(self.git_blob_sha1):
            raise ConfigError(f"files[{self.name}].git_blob_sha1 must be 40 lowercase hex digits or null, got {self.git_blob_sha1!r}")
        if self.git_blob_sha1 is not None and self.member is not None:
            raise ConfigError(f"files[{self.name}]: git_blob_sha1 checks a downloaded file, not a member of an archive")
        if self.archive_sha256 and not self.member:
            raise ConfigError(f"files[{self.name}]: archive_sha256 is given but no member to extract")

    @property
    def verifiable(self) -> bool:
        """True when a download of this file can be checked against a known checksum."""
        return self.sha256 is not None or self.archive_sha256 is not None or self.git_blob_sha1 is not None


@dataclass
class DatasetCard:
    """A dataset's card: provenance, license, citation, splits and files."""

    name: str
    domain: str
    title: str
    description: str
    homepage: str
    license: str
    citation: str
    files: list[DatasetFile] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)

    def file(self, name: str) -> DatasetFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"dataset {self.name!r} has no file {name!r}; its files: {', '.join(f.name for f in self.files)}")


def _card_folder():
    return importlib.resources.files("sciogen") / "datasets"


@lru_cache(maxsize=1)
def cards() -> dict[str, DatasetCard]:
    """All shipped dataset cards by name."""
    out: dict[str, DatasetCard] = {}
    for entry in sorted(_card_folder().iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        try:
            c = from_dict(DatasetCard, yaml.safe_load(entry.read_text()), prefix=f"{entry.name}: ")
        except yaml.YAMLError as err:
            raise ConfigError(f"dataset card {entry.name} is not valid YAML: {err}") from None
        if c.name in out:
            raise ConfigError(f"two dataset cards are named {c.name!r}")
        out[c.name] = c
    return out


def dataset_names() -> list[str]:
    """The names of the registered datasets."""
    return sorted(cards())


def card(name: str) -> DatasetCard:
    """The card of dataset ``name``."""
    known = cards()
    if name not in known:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(known))}")
    return known[name]
