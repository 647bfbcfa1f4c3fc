"""The downloader against a local HTTP server on 127.0.0.1: success, corruption, dropped connections."""

import hashlib
import http.server
import threading
import typing
from functools import partial
from pathlib import Path

import pytest

from rsn2.data import download_dataset, download_file, locate
from rsn2.errors import DataError


class _Handler(http.server.SimpleHTTPRequestHandler):
    drops: typing.ClassVar[dict[str, int]] = {}  # path -> remaining requests to cut short

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.drops.get(self.path, 0) > 0:
            self.drops[self.path] -= 1
            body = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])  # then the connection closes
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def serve():
    servers = []

    def start(root: Path, drops: dict[str, int] | None = None) -> str:
        handler = type("H", (_Handler,), {"drops": dict(drops or {})})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_writes_atomically(tmp_path, serve):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(b"x" * 5000)
    url = serve(src) + "/f.bin"
    target = tmp_path / "out" / "f.bin"
    download_file(url, target, (_sha(b"x" * 5000),), progress=False)
    assert target.read_bytes() == b"x" * 5000
    with pytest.raises(DataError, match=r"expected .* nothing was saved"):
        download_file(url, tmp_path / "out" / "g.bin", ("0" * 64,), progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f.bin"]  # no partial files


def test_dropped_connection_is_retried_then_reported(tmp_path, serve):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(b"y" * 10000)
    base = serve(src, drops={"/f.bin": 2})
    target = tmp_path / "out" / "f.bin"
    download_file(base + "/f.bin", target, (_sha(b"y" * 10000),), retries=3, backoff=0.01, progress=False)
    assert target.read_bytes() == b"y" * 10000
    base = serve(src, drops={"/f.bin": 10})
    target2 = tmp_path / "out" / "h.bin"
    with pytest.raises(DataError, match="failed after 3 attempts"):
        download_file(base + "/f.bin", target2, (_sha(b"y" * 10000),), retries=2, backoff=0.01, progress=False)
    assert not target2.exists() and not list((tmp_path / "out").glob(".*part"))


def test_unreachable_server_fails_with_reason(tmp_path):
    with pytest.raises(DataError, match="download failed after 1 attempts"):
        download_file("http://127.0.0.1:9/none", tmp_path / "x", ("0" * 64,), retries=0, progress=False)


def test_manual_dataset_explains_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"cannot be downloaded automatically.*UTKFace"):
        download_dataset("utkface", tmp_path)


@pytest.mark.real_data
def test_download_real_files_from_a_local_mirror(tmp_path, serve, shared_data):
    """The real Fashion-MNIST and MNIST files, served from ../shared/data, land verified and load."""
    mirror = serve(shared_data)
    paths = download_dataset("fashion-mnist", tmp_path, mirror=mirror, progress=False)
    assert paths[0].name == "train-images-idx3-ubyte.gz"
    download_dataset("mnist", tmp_path, mirror=mirror, progress=False)
    found = locate("mnist", tmp_path)
    found.verify()

    # a second call finds everything verified and fetches nothing
    def refuse(*args, **kwargs):
        raise AssertionError("should not download again")

    download_dataset("mnist", tmp_path, mirror=mirror, fetch=refuse)
    # a corrupted copy on the server is refused and nothing replaces the missing file
    bad = tmp_path / "bad-mirror" / "boston"
    bad.mkdir(parents=True)
    (bad / "boston_housing.npz").write_bytes(b"corrupted")
    with pytest.raises(DataError, match="sha256"):
        download_dataset("boston", tmp_path / "d", mirror=serve(tmp_path / "bad-mirror"), progress=False)
    assert not (tmp_path / "d" / "boston" / "boston_housing.npz").exists()
