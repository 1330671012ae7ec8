"""Dataset cards and checksummed fetching (local copies and file:// downloads only)."""

from __future__ import annotations

import hashlib
import importlib.resources
import shutil
import zipfile
from pathlib import Path

import pytest

from sciogen import data
from sciogen.config import ConfigError
from sciogen.data import download as dl
from sciogen.data.registry import DatasetCard, DatasetFile

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"qm9", "moses", "zinc250k", "perov_5", "mp_20", "carbon_24", "exchange_rate_nips", "exchange_rate", "mni152_2009"}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any attempt to open a non-file URL fails the test."""
    real = dl.urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise AssertionError(f"a test tried to download {url}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(dl.urllib.request, "urlopen", guarded)


def _card_with(monkeypatch, *files: DatasetFile) -> None:
    card = DatasetCard(name="fake", domain="toy", title="t", description="d", homepage="h", license="l", citation="c", files=list(files))
    monkeypatch.setattr(dl, "card", lambda name: card)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cards_parse_and_carry_provenance():
    cards = data.cards()
    assert EXPECTED <= set(cards)
    for name, card in cards.items():
        assert card.name == name and card.files, name
        assert card.license and card.citation.strip().startswith("@"), name
        assert all(f.url.startswith("https://") for f in card.files), name
        assert card.domain in {"molecules", "crystals", "timeseries", "volumes", "deformation"}, name


def test_cards_are_package_data_and_the_root_folder_points_at_them():
    packaged = importlib.resources.files("sciogen") / "datasets"
    assert sorted(p.name for p in packaged.iterdir() if p.name.endswith(".yaml")) == sorted(f"{n}.yaml" for n in data.cards())
    assert (REPO / "datasets").resolve() == (REPO / "sciogen" / "datasets").resolve()


def test_card_checks_reject_bad_checksums_and_unknown_names():
    with pytest.raises(ConfigError, match="sha256 must be 64 lowercase hex digits or null, got 'abc'"):
        DatasetFile(name="x", url="https://x", sha256="abc")
    with pytest.raises(KeyError, match="unknown dataset 'qm10'; known datasets: .*qm9"):
        data.card("qm10")
    with pytest.raises(KeyError, match="has no file 'train.csv'"):
        data.card("exchange_rate").file("train.csv")


@pytest.mark.parametrize(
    "name, folder, files",
    [
        ("perov_5", "crystals/perov_5", ["val.csv", "test.csv"]),
        ("moses", "molecules/moses", None),
        ("exchange_rate_nips", "timeseries", ["exchange_rate_nips.tar.gz"]),
        ("exchange_rate", "timeseries/lstnet_raw", None),
    ],
)
def test_local_copies_match_the_checksums_on_the_cards(shared_datasets, name, folder, files):
    assert data.fetch(name, path=shared_datasets / folder, files=files) == shared_datasets / folder


def test_a_corrupted_local_copy_is_refused(shared_datasets, tmp_path):
    shutil.copy(shared_datasets / "crystals" / "perov_5" / "val.csv", tmp_path / "val.csv")
    with open(tmp_path / "val.csv", "ab") as handle:
        handle.write(b"\n")
    with pytest.raises(dl.ChecksumError, match=r"val\.csv: SHA-256 is [0-9a-f]{64}, expected 326f4012"):
        data.fetch("perov_5", path=tmp_path, files=["val.csv"])
    with pytest.raises(FileNotFoundError, match=r"lacks files of dataset 'perov_5': test\.csv <- https://"):
        data.fetch("perov_5", path=tmp_path, files=["test.csv"])


def test_members_of_an_archive_are_extracted_and_verified(shared_datasets, tmp_path):
    folder = data.fetch("exchange_rate_nips", path=shared_datasets / "timeseries", files=["exchange_rate_nips.tar.gz"])
    archive = folder / "exchange_rate_nips.tar.gz"
    out = dl.extract_member(archive, "exchange_rate_nips/metadata/metadata.json", tmp_path / "metadata.json")
    assert _sha(out) == data.card("exchange_rate_nips").file("metadata.json").sha256


def test_download_verifies_and_caches(tmp_path, monkeypatch):
    source = tmp_path / "source.csv"
    source.write_text("a,b\n1,2\n")
    _card_with(monkeypatch, DatasetFile(name="table.csv", url=source.as_uri(), sha256=_sha(source)))
    folder = data.fetch("fake", cache=tmp_path / "cache", progress=False)
    assert (folder / "table.csv").read_text() == "a,b\n1,2\n"
    source.unlink()  # a second fetch is served from the verified cache
    assert data.fetch("fake", cache=tmp_path / "cache", progress=False) == folder


def test_a_download_with_the_wrong_checksum_leaves_nothing(tmp_path, monkeypatch):
    source = tmp_path / "source.csv"
    source.write_text("tampered\n")
    _card_with(monkeypatch, DatasetFile(name="table.csv", url=source.as_uri(), sha256="0" * 64))
    with pytest.raises(dl.ChecksumError, match="expected 0000"):
        data.fetch("fake", cache=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "fake").iterdir()) == []


def test_git_blob_ids_verify_downloads_and_local_copies(tmp_path, monkeypatch, shared_datasets):
    source = tmp_path / "source.csv"
    source.write_bytes(b"hello\n")
    assert data.git_blob_sha1(source) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"
    _card_with(monkeypatch, DatasetFile(name="table.csv", url=source.as_uri(), git_blob_sha1="ce013625030ba8dba906f756967f9e9ca394464a"))
    folder = data.fetch("fake", cache=tmp_path / "cache", progress=False)
    assert (folder / "table.csv").read_bytes() == b"hello\n"
    _card_with(monkeypatch, DatasetFile(name="table.csv", url=source.as_uri(), git_blob_sha1="0" * 40))
    with pytest.raises(dl.ChecksumError, match="Git blob id is ce0136.*expected 0000"):
        data.fetch("fake", cache=tmp_path / "other", progress=False)
    assert list((tmp_path / "other" / "fake").iterdir()) == []
    # the Perov-5 copies here have the blob ids CDVAE's tree lists at the pinned commit
    perov = shared_datasets / "crystals" / "perov_5"
    if not perov.is_dir():
        pytest.skip(f"{perov} is absent")
    assert data.git_blob_sha1(perov / "val.csv") == "4a2c8dde98347dd0e01fa83dcf3982c2abe98f9f"
    assert data.git_blob_sha1(perov / "test.csv") == "d3c5d5af4b27a2a139149f2bb73c8a3dba9d8ac1"
    with pytest.raises(ConfigError, match="git_blob_sha1 must be 40 lowercase hex digits"):
        DatasetFile(name="x", url="u", git_blob_sha1="abc")


def test_files_without_a_checksum_are_refused_unless_allowed(tmp_path, monkeypatch):
    source = tmp_path / "source.csv"
    source.write_text("x\n")
    _card_with(monkeypatch, DatasetFile(name="table.csv", url=source.as_uri()))
    with pytest.raises(dl.ChecksumError, match="gives no SHA-256 for table.csv .* allow_unverified=True"):
        data.fetch("fake", cache=tmp_path / "cache", progress=False)
    with pytest.warns(UserWarning, match=f"its SHA-256 is {_sha(source)}"):
        data.fetch("fake", cache=tmp_path / "cache", progress=False, allow_unverified=True)


def test_an_archive_member_is_downloaded_through_its_verified_archive(tmp_path, monkeypatch):
    archive = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("pkg/data/train.csv", "1,2\n3,4\n")
    entry = DatasetFile(name="train.csv", url=archive.as_uri(), member="pkg/data/train.csv", archive_sha256=_sha(archive))
    _card_with(monkeypatch, entry)
    with pytest.warns(UserWarning, match="no checksum on its card"):
        folder = data.fetch("fake", cache=tmp_path / "cache", progress=False)
    assert (folder / "train.csv").read_text() == "1,2\n3,4\n"
    bad = DatasetFile(name="other.csv", url=archive.as_uri(), member="pkg/data/missing.csv", archive_sha256=_sha(archive))
    _card_with(monkeypatch, bad)
    with pytest.raises(KeyError, match="has no file 'pkg/data/missing.csv'"):
        data.fetch("fake", cache=tmp_path / "cache", progress=False)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SCIOGEN_CACHE", str(tmp_path / "c"))
    assert dl.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SCIOGEN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dl.cache_dir() == tmp_path / "xdg" / "sciogen"
