"""Downloads over HTTP from a server on 127.0.0.1: short bodies and failed members leave nothing behind."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sciogen import data
from sciogen.data import download as dl
from sciogen.data.registry import DatasetCard, DatasetFile

BODY = b"a,b\n" + b"1,2\n" * 1000


class _Handler(BaseHTTPRequestHandler):
    """Serves BODY; ``/short`` announces more bytes than it sends (a dropped connection)."""

    def do_GET(self):  # noqa: N802 - the http.server API
        announced = len(BODY) + (500 if self.path == "/short" else 0)
        self.send_response(200)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(BODY)
        self.close_connection = True

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _card(monkeypatch, *files: DatasetFile) -> None:
    card = DatasetCard(name="fake", domain="toy", title="t", description="d", homepage="h", license="l", citation="c",
                       files=list(files))
    monkeypatch.setattr(dl, "card", lambda name: card)


def test_an_http_download_is_verified_and_cached(server, tmp_path, monkeypatch):
    _card(monkeypatch, DatasetFile(name="t.csv", url=f"{server}/full", sha256=hashlib.sha256(BODY).hexdigest()))
    folder = data.fetch("fake", cache=tmp_path / "cache", progress=False)
    assert (folder / "t.csv").read_bytes() == BODY


def test_a_body_shorter_than_its_content_length_is_refused_and_nothing_is_kept(server, tmp_path, monkeypatch):
    # no checksum on the card (allowed explicitly), so only the length can catch the cut
    _card(monkeypatch, DatasetFile(name="t.csv", url=f"{server}/short"))
    with pytest.raises(dl.IncompleteDownload, match=f"ended after {len(BODY):,} of its {len(BODY) + 500:,} bytes"):
        data.fetch("fake", cache=tmp_path / "cache", progress=False, allow_unverified=True)
    assert list((tmp_path / "cache" / "fake").iterdir()) == []


def test_a_member_that_fails_its_checksum_never_reaches_its_final_name(server, tmp_path, monkeypatch):
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("pkg/train.csv", "tampered\n")
    entry = DatasetFile(name="train.csv", url=archive.as_uri(), member="pkg/train.csv",
                        archive_sha256=hashlib.sha256(archive.read_bytes()).hexdigest(), sha256="0" * 64)
    _card(monkeypatch, entry)
    with pytest.raises(dl.ChecksumError, match="pkg/train.csv of .*expected 0000"):
        data.fetch("fake", cache=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "fake").iterdir()) == []
