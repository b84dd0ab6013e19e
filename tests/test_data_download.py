"""Downloads against a real HTTP server on 127.0.0.1 that misbehaves in the ways mirrors do."""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from digitnet.data import (
    MIRRORS,
    FileChecksum,
    datasets,
    download,
    load,
    read_idx,
    write_idx,
)
from digitnet.errors import DataError

NAMES = [name + ".gz" for name in datasets.IDX_FILES.values()]


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """Four small generated IDX files: arrays, exact .gz bytes, and variants."""
    folder = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 20).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (8, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 8).astype(np.uint8),
    }
    good, corrupt, recompressed, raw_sha = {}, {}, {}, {}
    for name, array in arrays.items():
        write_idx(folder / name, array)
        good[name] = (folder / name).read_bytes()
        raw = gzip.decompress(good[name])
        raw_sha[name] = hashlib.sha256(raw).hexdigest()
        changed = bytearray(raw)
        changed[-1] = (changed[-1] + 1) % 10  # still a well-formed IDX file
        corrupt[name] = gzip.compress(bytes(changed), mtime=0)
        recompressed[name] = gzip.compress(raw, compresslevel=1, mtime=12345)
        assert recompressed[name] != good[name]
    gz_sha = {name: hashlib.sha256(data).hexdigest() for name, data in good.items()}
    return {"arrays": arrays, "good": good, "corrupt": corrupt, "recompressed": recompressed,
            "gz_sha": gz_sha, "raw_sha": raw_sha}


@pytest.fixture(scope="module")
def server(payload):
    """Serves /<behaviour>/<file name>; records every request path."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            behaviour, _, name = self.path.strip("/").partition("/")
            if behaviour == "missing" or name not in payload["good"]:
                self.send_error(404, "Not Found")
                return
            if behaviour == "slow":
                time.sleep(1.5)
            body = {"corrupt": payload["corrupt"], "recompressed": payload["recompressed"]}.get(
                behaviour, payload["good"])[name]
            if behaviour == "notidx":
                body = b"<html>mirror maintenance</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if behaviour == "drop":
                # Promise the whole file, send half of it, hang up.
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on the stalled mirror, as it should

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """A proxy configured on the machine must not intercept the loopback server."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def sums(payload):
    return dict(payload["gz_sha"])


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def mirror(server, behaviour):
    return f"{server[0]}/{behaviour}/"


def test_good_mirror(tmp_path, server, payload):
    folder = download("mnist", cache_dir=tmp_path, mirrors=[mirror(server, "good")],
                      checksums=sums(payload), progress=False)
    assert folder == tmp_path / "mnist"
    assert listing(folder) == sorted(NAMES)
    for name, array in payload["arrays"].items():
        np.testing.assert_array_equal(read_idx(folder / name), array)
        assert (folder / name).read_bytes() == payload["good"][name]


def test_progress_bar_only_when_asked(tmp_path, server, payload, capsys):
    download("mnist", cache_dir=tmp_path / "a", mirrors=[mirror(server, "good")], checksums=sums(payload))
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz [" in err and "100%" in err
    download("mnist", cache_dir=tmp_path / "b", mirrors=[mirror(server, "good")],
             checksums=sums(payload), progress=False)
    assert capsys.readouterr().err == ""


def test_falls_back_to_the_next_mirror(tmp_path, server, payload):
    _, hits = server
    hits.clear()
    bad_then_good = [mirror(server, b) for b in ("missing", "corrupt", "drop", "good")]
    folder = download("fashion-mnist", cache_dir=tmp_path, mirrors=bad_then_good,
                      checksums=sums(payload), progress=False)
    assert listing(folder) == sorted(NAMES)  # and no temporary files
    for name, array in payload["arrays"].items():
        np.testing.assert_array_equal(read_idx(folder / name), array)
    first = NAMES[0]
    assert hits[:4] == [f"/{b}/{first}" for b in ("missing", "corrupt", "drop", "good")]
    # the mirror that worked is asked first for the remaining files
    assert hits[4:] == [f"/good/{name}" for name in NAMES[1:]]


def test_all_mirrors_failing_is_one_clear_error(tmp_path, server, payload):
    bad = [mirror(server, b) for b in ("missing", "corrupt", "drop")]
    with pytest.raises(DataError) as info:
        download("kmnist", cache_dir=tmp_path, mirrors=bad, checksums=sums(payload), progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "could not download kmnist file train-images-idx3-ubyte.gz from any mirror" in message
    assert f"{bad[0]}: HTTP 404" in message
    assert f"{bad[1]}: checksum mismatch" in message
    assert f"{bad[2]}: connection closed after" in message or f"{bad[2]}: IncompleteRead" in message
    assert f"put them in {tmp_path / 'kmnist'}" in message
    for name in NAMES:
        assert name in message
    assert listing(tmp_path / "kmnist") == []  # no partial or temporary file


def test_unreachable_and_stalled_mirrors(tmp_path, server, payload):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    mirrors = [f"http://127.0.0.1:{closed_port}/", mirror(server, "slow")]
    with pytest.raises(DataError) as info:
        download("mnist", cache_dir=tmp_path, mirrors=mirrors, checksums=sums(payload),
                 progress=False, timeout=0.3)
    message = str(info.value)
    assert "refused" in message.lower()
    assert "timed out" in message.lower()
    assert listing(tmp_path / "mnist") == []


def test_fashion_failure_mentions_the_debian_package(tmp_path, server, payload):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        download("fashion", cache_dir=tmp_path, mirrors=[mirror(server, "missing")],
                 checksums=sums(payload), progress=False)


def test_present_files_are_not_fetched_again(tmp_path, server, payload):
    _, hits = server
    download("mnist", cache_dir=tmp_path, mirrors=[mirror(server, "good")], checksums=sums(payload), progress=False)
    hits.clear()
    download("mnist", cache_dir=tmp_path, mirrors=[mirror(server, "good")], checksums=sums(payload), progress=False)
    assert hits == []
    damaged = tmp_path / "mnist" / NAMES[1]
    damaged.write_bytes(b"junk")
    download("mnist", cache_dir=tmp_path, mirrors=[mirror(server, "good")], checksums=sums(payload), progress=False)
    assert hits == [f"/good/{NAMES[1]}"]
    assert damaged.read_bytes() == payload["good"][NAMES[1]]


def test_recompressed_copy_passes_on_content_digest(tmp_path, server, payload):
    by_content = {name: FileChecksum(raw_sha256=payload["raw_sha"][name]) for name in NAMES}
    folder = download("mnist", cache_dir=tmp_path / "a", mirrors=[mirror(server, "recompressed")],
                      checksums=by_content, progress=False)
    np.testing.assert_array_equal(read_idx(folder / NAMES[0]), payload["arrays"][NAMES[0]])
    with pytest.raises(DataError, match="checksum mismatch"):
        download("mnist", cache_dir=tmp_path / "b", mirrors=[mirror(server, "recompressed")],
                 checksums=sums(payload), progress=False)
    with pytest.raises(DataError, match=r"uncompressed SHA-256 .* expected"):
        download("mnist", cache_dir=tmp_path / "c", mirrors=[mirror(server, "corrupt")],
                 checksums=by_content, progress=False)


def test_without_digest_the_idx_structure_decides(tmp_path, server, payload):
    folder = download("mnist", cache_dir=tmp_path / "a", mirrors=[mirror(server, "good")], checksums={}, progress=False)
    assert listing(folder) == sorted(NAMES)
    with pytest.raises(DataError, match="not a valid IDX file"):
        download("mnist", cache_dir=tmp_path / "b", mirrors=[mirror(server, "notidx")], checksums={}, progress=False)
    assert listing(tmp_path / "b" / "mnist") == []


def test_download_then_load(tmp_path, server, payload, monkeypatch):
    """The registry is module-level so private mirrors (here: the test server) can be added."""
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(datasets.CHECKSUMS, "kmnist",
                        {name[:-3]: FileChecksum(gz_sha256=payload["gz_sha"][name]) for name in NAMES})
    folder = download("kmnist", mirrors=[mirror(server, "good")], progress=False)
    assert folder == tmp_path / "kmnist"
    ds = load("kmnist", scale=None, flatten=False, dtype=np.uint8)
    assert ds.name == "kmnist"
    np.testing.assert_array_equal(ds.X_train, payload["arrays"]["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(ds.y_test, payload["arrays"]["t10k-labels-idx1-ubyte.gz"])
    # a file swapped afterwards fails the check on the next load
    (folder / NAMES[1]).write_bytes(payload["corrupt"][NAMES[1]])
    with pytest.raises(DataError, match="not the genuine kmnist file"):
        load("kmnist")


def test_argument_errors(tmp_path):
    with pytest.raises(DataError, match="cannot download 'cifar10'"):
        download("cifar10", cache_dir=tmp_path)
    with pytest.raises(DataError, match="no mirrors given"):
        download("mnist", cache_dir=tmp_path, mirrors=[])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot create the download folder"):
        download("mnist", cache_dir=blocker, mirrors=["http://127.0.0.1:9/"])


def test_default_mirrors_and_digests_cover_every_file():
    assert set(MIRRORS) == {"mnist", "fashion-mnist", "kmnist"}
    for name, bases in MIRRORS.items():
        assert len(bases) >= 2 and all(base.endswith("/") for base in bases)
        known = datasets.CHECKSUMS[name]
        assert set(known) == set(datasets.IDX_FILES.values())
        for digest in known.values():
            for value in (digest.raw_sha256, digest.gz_sha256):
                assert value is None or (len(value) == 64 and int(value, 16) >= 0)
