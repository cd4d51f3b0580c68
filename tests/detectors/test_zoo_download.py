"""Zoo downloads against a local HTTP server that answers like Google Drive does for large files."""
from __future__ import annotations

import hashlib
import http.server
import threading
import urllib.parse

import pytest

from int8track.detectors.zoo import download, gdrive_confirmation_url

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB standing in for a weights file
FILE_ID = "1AoN2AxzVwOLM0gJ15bcwqZUpFjlDV1dX"
FORM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{base}/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="8c2a-uuid"></form>
</body></html>"""
LINK_PAGE = """<html><body><a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy_9&amp;id={file_id}">
Download anyway</a></body></html>"""


class DriveImitation(http.server.BaseHTTPRequestHandler):
    """``/uc`` answers the warning page (``style`` form or link); the confirmed URL answers the file."""

    style = "form"
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        confirmed = query.get("confirm") in ("t", "Xy_9") and query.get("id") == FILE_ID
        if confirmed and (url.path == "/download" or self.style == "link"):
            self._answer(PAYLOAD, "application/octet-stream")
        elif url.path == "/uc" and self.style in ("form", "link"):
            base = f"http://{self.headers['Host']}"
            page = (FORM_PAGE if self.style == "form" else LINK_PAGE).format(base=base, file_id=FILE_ID)
            self._answer(page.encode(), "text/html; charset=utf-8")
        else:
            self._answer(b"<html><body>Quota exceeded</body></html>", "text/html")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def drive():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DriveImitation)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    DriveImitation.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("style", ["form", "link"])
def test_confirmation_page_is_followed_to_the_file(drive, tmp_path, monkeypatch, style):
    monkeypatch.setattr(DriveImitation, "style", style)
    target = tmp_path / "bytetrack_nano_mot17.pth.tar"
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert download(f"{drive}/uc?export=download&id={FILE_ID}", target, digest) == target
    assert target.read_bytes() == PAYLOAD
    assert len(DriveImitation.requests) == 2 and "confirm=" in DriveImitation.requests[1]
    assert list(tmp_path.iterdir()) == [target]


def test_any_other_html_answer_is_an_error_and_leaves_nothing(drive, tmp_path, monkeypatch):
    monkeypatch.setattr(DriveImitation, "style", "quota")
    target = tmp_path / "w.pth"
    with pytest.raises(OSError, match="answered with an HTML page"):
        download(f"{drive}/uc?export=download&id={FILE_ID}", target)
    assert not list(tmp_path.iterdir())


def test_confirmation_url_parsing():
    page = FORM_PAGE.format(base="https://drive.usercontent.google.com", file_id="abc")
    url = gdrive_confirmation_url(page, "https://drive.google.com/uc?export=download&id=abc")
    assert url == "https://drive.usercontent.google.com/download?id=abc&export=download&confirm=t&uuid=8c2a-uuid"
    assert gdrive_confirmation_url("<html>Sign in</html>", "https://drive.google.com/uc") is None
