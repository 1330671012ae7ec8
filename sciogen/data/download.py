"""Cached downloads with SHA-256 verification, and :func:`fetch` for registered datasets.

Downloads go to ``$SCIOGEN_CACHE`` (default ``$XDG_CACHE_HOME/sciogen`` or
``~/.cache/sciogen``), ``<cache>/<dataset>/<file>``. Every file is streamed to a
temporary name, hashed on the way, checked, then renamed: a partial or corrupted
download never sits in the cache under its final name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

from .registry import DatasetFile, card

__all__ = ["ChecksumError", "IncompleteDownload", "cache_dir", "sha256sum", "git_blob_sha1", "download_url", "extract_member", "fetch"]

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's SHA-256 differs from its card's, or no checksum exists to verify it."""


class IncompleteDownload(OSError):
    """The server sent fewer (or more) bytes than its Content-Length announced."""


def cache_dir() -> Path:
    """The download cache folder (``$SCIOGEN_CACHE``, else the XDG cache)."""
    if os.environ.get("SCIOGEN_CACHE"):
        return Path(os.environ["SCIOGEN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "sciogen"


def sha256sum(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: str | Path) -> str:
    """Git's object id of a file (``git hash-object``): SHA-1 of ``b"blob <size>\\0"`` + content."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_blob(path: Path, expected: str | None, what: str) -> None:
    if expected is None:
        return
    actual = git_blob_sha1(path)
    if actual != expected:
        raise ChecksumError(
            f"{what}: Git blob id is {actual}, expected {expected}; the file is corrupt or not the official one"
        )


def _check(path: Path, expected: str | None, what: str) -> None:
    if expected is None:
        return
    actual = sha256sum(path)
    if actual != expected:
        raise ChecksumError(f"{what}: SHA-256 is {actual}, expected {expected}; the file is corrupt or not the official one")


def download_url(
    url: str, destination: str | Path, *, sha256: str | None = None, progress: bool = True, timeout: float = 60.0,
    git_blob: str | None = None,
) -> Path:
    """Download ``url`` to ``destination`` atomically, checking ``sha256`` and / or the Git
    blob id ``git_blob`` when given (nothing is left at ``destination`` when a check fails)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    digest = hashlib.sha256()
    try:
        with open(tmp, "xb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise IncompleteDownload(
                f"download of {url} ended after {received:,} of its {total:,} bytes (connection dropped?); "
                "nothing was kept, try again"
            )
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ChecksumError(f"download of {url}: SHA-256 is {digest.hexdigest()}, expected {sha256}")
        _check_blob(tmp, git_blob, f"download of {url}")
        os.replace(tmp, destination)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise OSError(f"download of {url} failed: {reason}; check the connection, or fetch the file yourself and "
                      "pass its folder as a local copy") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return destination


def extract_member(archive: str | Path, member: str, destination: str | Path, *, sha256: str | None = None) -> Path:
    """Copy one member of a zip (also .whl) or tar archive to ``destination``.

    The member is written to a temporary name and checked against ``sha256`` (when given)
    before it is renamed: a member that fails its check is never left under its final name.
    """
    archive, destination = Path(archive), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z, z.open(_zip_member(z, member, archive)) as src, open(tmp, "xb") as dst:
                shutil.copyfileobj(src, dst)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                src = t.extractfile(member) if member in t.getnames() else None
                if src is None:
                    raise KeyError(f"{archive} has no file {member!r}")
                with src, open(tmp, "xb") as dst:
                    shutil.copyfileobj(src, dst)
        else:
            raise ValueError(f"{archive} is neither a zip nor a tar archive")
        _check(tmp, sha256, f"{member} of {archive}")
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return destination


def _zip_member(z: zipfile.ZipFile, member: str, archive: Path) -> str:
    if member not in z.namelist():
        raise KeyError(f"{archive} has no file {member!r}")
    return member


def fetch(
    name: str,
    *,
    path: str | Path | None = None,
    files: Iterable[str] | None = None,
    cache: str | Path | None = None,
    allow_unverified: bool = False,
    progress: bool = True,
) -> Path:
    """The folder holding dataset ``name``'s files, downloading what is missing.

    Args:
        name: a registered dataset (``sciogen.data.dataset_names()``).
        path: a local copy: the files are looked up there (and checked where the card has
            a checksum) and nothing is downloaded.
        files: only these of the card's files (default: all).
        cache: the cache folder (default :func:`cache_dir`).
        allow_unverified: download files whose card has no checksum (a warning prints
            their SHA-256 so it can be recorded after checking the source).
        progress: show download progress bars.

    Raises:
        FileNotFoundError: a file is missing from ``path``.
        ChecksumError: a file does not match its checksum, or has none and
            ``allow_unverified`` is False.
    """
    c = card(name)
    wanted = [c.file(f) for f in files] if files is not None else list(c.files)
    if path is not None:
        return _check_local(Path(path), wanted, name)
    folder = Path(cache) if cache is not None else cache_dir()
    for entry in wanted:
        _fetch_file(entry, folder / name, folder / "_archives", name, allow_unverified, progress)
    return folder / name


def _check_local(folder: Path, wanted: list[DatasetFile], name: str) -> Path:
    missing = [f for f in wanted if not (folder / f.name).is_file()]
    if missing:
        listing = "; ".join(f"{f.name} <- {f.url}" for f in missing)
        raise FileNotFoundError(f"{folder} lacks files of dataset {name!r}: {listing}")
    for f in wanted:
        if f.sha256 is None and f.git_blob_sha1 is None:
            warnings.warn(
                f"dataset {name!r}: the card has no SHA-256 for {f.name}, so {folder / f.name} is not verified", stacklevel=3
            )
        _check(folder / f.name, f.sha256, str(folder / f.name))
        _check_blob(folder / f.name, f.git_blob_sha1, str(folder / f.name))
    return folder


def _matches_card(path: Path, entry: DatasetFile) -> bool:
    """True when ``path`` is verified by the card's SHA-256, or by its Git blob id when it has no SHA-256."""
    if entry.sha256 is not None:
        return sha256sum(path) == entry.sha256
    return entry.git_blob_sha1 is not None and git_blob_sha1(path) == entry.git_blob_sha1


def _fetch_file(entry: DatasetFile, folder: Path, archives: Path, name: str, allow_unverified: bool, progress: bool) -> None:
    target = folder / entry.name
    if target.is_file() and _matches_card(target, entry):
        return
    if not entry.verifiable and not allow_unverified:
        raise ChecksumError(
            f"dataset {name!r}: the card gives no SHA-256 for {entry.name} ({entry.url}), so a download "
            "cannot be verified; download it yourself and pass path=..., or pass allow_unverified=True"
        )
    if entry.member is None:
        download_url(entry.url, target, sha256=entry.sha256, progress=progress, git_blob=entry.git_blob_sha1)
    else:
        archive = archives / entry.url.rstrip("/").rsplit("/", 1)[-1]
        if not archive.is_file() or (entry.archive_sha256 and sha256sum(archive) != entry.archive_sha256):
            download_url(entry.url, archive, sha256=entry.archive_sha256, progress=progress)
        extract_member(archive, entry.member, target, sha256=entry.sha256)
    if entry.sha256 is None and entry.git_blob_sha1 is None:
        warnings.warn(
            f"dataset {name!r}: {entry.name} has no checksum on its card; its SHA-256 is {sha256sum(target)}", stacklevel=3
        )
