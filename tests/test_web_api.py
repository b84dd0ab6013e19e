"""The drawing page's HTTP API, against the real app and a real ``digitnet serve``.

A small network ([784, 64, 10], ~96% on the MNIST test set) is trained once
for this module on 20,000 real MNIST images; every answer is checked against
what that network computes itself.
"""

from __future__ import annotations

import io
import json
import re
import socket
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
PIL_Image = pytest.importorskip("PIL.Image")

import httpx  # noqa: E402

with warnings.catch_warnings():
    # Starlette's test client warns that it wants httpx2; httpx works.
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from fastapi.testclient import TestClient  # noqa: E402

from digitnet import Network  # noqa: E402
from digitnet.app.cli import serve as serve_cli  # noqa: E402
from digitnet.app.imaging import to_png_bytes  # noqa: E402
from digitnet.app.web.app import MAX_BODY_BYTES, STATIC_DIR, create_app  # noqa: E402
from digitnet.data import load_mnist  # noqa: E402
from digitnet.errors import DigitnetError  # noqa: E402
from digitnet.files.modelfile import load_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with:UserWarning")

from conftest import MNIST_PREPROCESSING  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def mnist_test():
    """``(X (10000, 784) float32 in [0, 1], y (10000,))``: the real MNIST test set."""
    return load_mnist("test")


@pytest.fixture(scope="module")
def model_path(small_model_path) -> Path:
    """The shared small model file (see conftest)."""
    return small_model_path


@pytest.fixture(scope="module")
def network(model_path) -> Network:
    return load_model(model_path)


@pytest.fixture(scope="module")
def client(network, model_path) -> TestClient:
    return TestClient(create_app(network, model_path=str(model_path)))


@pytest.fixture(scope="module")
def confident_digits(network, mnist_test) -> list[int]:
    """Indices of ten test digits (all ten classes) the network reads right with p > 0.9."""
    X, y = mnist_test
    proba = network.predict_proba(X[:300])
    chosen: dict[int, int] = {}
    for i, p in enumerate(proba):
        if p.argmax() == y[i] and p.max() > 0.9 and int(y[i]) not in chosen:
            chosen[int(y[i])] = i
    assert len(chosen) == 10, "the test model should read every class confidently"
    return [chosen[d] for d in range(10)]


# ---------------------------------------------------------------------------
# helpers


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` 8-bit grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def canvas_png(x: np.ndarray, *, dark_on_light: bool = False, transparent: bool = False) -> bytes:
    """An MNIST digit ``(784,)`` as a 280x280 PNG, as the drawing pad would send it."""
    if transparent:
        # White strokes on a transparent canvas (RGBA), alpha = ink.
        ink = np.repeat(np.repeat((x.reshape(28, 28) * 255).round().astype(np.uint8), 10, 0), 10, 1)
        rgba = np.zeros((280, 280, 4), np.uint8)
        rgba[..., :3] = 255
        rgba[..., 3] = ink
        buffer = io.BytesIO()
        PIL_Image.fromarray(rgba).save(buffer, format="PNG")
        return buffer.getvalue()
    return to_png_bytes(1 - x if dark_on_light else x, scale=10)


def post_png(client, png: bytes, content_type: str = "image/png"):
    return client.post("/api/predict", content=png, headers={"content-type": content_type})


def assert_one_line_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"].strip()
    assert "\n" not in body["detail"] and len(body["detail"]) < 300, body["detail"]
    assert "Traceback" not in response.text
    return body


# ---------------------------------------------------------------------------
# good inputs


def test_png_of_real_test_digits_is_read_correctly(client, network, mnist_test, confident_digits):
    X, y = mnist_test
    for i in confident_digits:
        response = post_png(client, canvas_png(X[i]))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["digit"] == y[i], f"test digit {i}"
        assert answer["label"] == str(y[i]) and answer["blank"] is False
        # The image the network read is the digit itself: MNIST digits are
        # already cropped to 20 px and centred, so preprocessing barely moves them.
        seen = np.asarray(answer["input"])
        assert seen.shape == (784,) and 0 <= seen.min() and seen.max() <= 1
        assert np.corrcoef(seen, X[i])[0, 1] > 0.9
        # Every number is the network's own for that input.
        expected = network.forward(seen.astype(np.float32).reshape(1, 784))
        np.testing.assert_allclose(answer["probabilities"], expected[-1][0], atol=1e-3)
        np.testing.assert_allclose(answer["activations"][0], expected[1][0], atol=1e-3)


def test_answer_shape(client, mnist_test, confident_digits):
    X, _ = mnist_test
    answer = post_png(client, canvas_png(X[confident_digits[3]])).json()
    assert set(answer) == {"blank", "digit", "label", "confidence", "probabilities", "input", "activations"}
    p = np.asarray(answer["probabilities"])
    assert p.shape == (10,) and abs(p.sum() - 1) < 1e-4
    assert answer["digit"] == int(p.argmax()) and answer["confidence"] == pytest.approx(p.max())
    assert [len(a) for a in answer["activations"]] == [64]
    assert min(answer["activations"][0]) >= 0  # ReLU


@pytest.mark.parametrize("style", ["dark_on_light", "transparent"])
def test_polarity_and_transparency_are_handled_on_the_server(client, mnist_test, confident_digits, style):
    X, y = mnist_test
    i = confident_digits[7]
    response = post_png(client, canvas_png(X[i], **{style: True}))
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == y[i]


def test_json_pixels_give_the_networks_own_answer(client, network, mnist_test, confident_digits):
    X, y = mnist_test
    for i in confident_digits[:4]:
        answer = client.post("/api/predict", json={"pixels": X[i].tolist()}).json()
        assert answer["digit"] == y[i]
        np.testing.assert_allclose(answer["probabilities"], network.predict_proba(X[i])[0], atol=1e-6)
        np.testing.assert_allclose(answer["input"], X[i], atol=1e-4)
    rows = X[confident_digits[5]].reshape(28, 28).tolist()  # 28 rows of 28 work too
    assert client.post("/api/predict", json={"pixels": rows}).json()["digit"] == 5


def test_json_pixels_can_be_preprocessed(client, mnist_test, confident_digits):
    X, y = mnist_test
    i = confident_digits[2]
    # The digit shrunk to half size and pushed into the top-left corner.
    small = X[i].reshape(28, 28)[::2, ::2]
    off_centre = np.zeros((28, 28), np.float32)
    off_centre[:14, :14] = small
    answer = client.post("/api/predict", json={"pixels": off_centre.ravel().tolist(),
                                               "preprocess": True}).json()
    seen = np.asarray(answer["input"]).reshape(28, 28)
    rows, cols = np.indices((28, 28))
    com = (float((seen * rows).sum() / seen.sum()), float((seen * cols).sum() / seen.sum()))
    assert com == pytest.approx((14, 14), abs=0.3)
    assert answer["digit"] == y[i]


def test_symmetric_input_scale_is_applied(network, mnist_test, confident_digits):
    """A model trained on [-1, 1] pixels gets 2x - 1 (the preprocessing contract)."""
    X, _ = mnist_test
    symmetric = network.copy()
    symmetric.metadata = {"preprocessing": {**MNIST_PREPROCESSING, "scale": "symmetric"}}
    x = X[confident_digits[0]]
    answer = TestClient(create_app(symmetric)).post("/api/predict", json={"pixels": x.tolist()}).json()
    np.testing.assert_allclose(answer["probabilities"], network.predict_proba(2 * x - 1)[0], atol=1e-6)
    np.testing.assert_allclose(answer["input"], x, atol=1e-4)  # still the [0, 1] image


def test_model_description(client, network):
    model = client.get("/api/model").json()
    assert model["sizes"] == [784, 64, 10] and model["hidden_layers"] == [64]
    assert model["n_params"] == network.n_params
    assert [layer["params"] for layer in model["layers"]] == [784 * 64 + 64, 64 * 10 + 10]
    assert model["recipe"] == {"name": "small-test-model"} and model["input_scale"] == "unit"
    assert model["accuracy"]["n_test"] == 10000 and 0.93 < model["accuracy"]["test"] <= 1


def test_model_header_with_nan_still_describes(network):
    odd = network.copy()
    odd.metadata = {"history": {"records": [{"epoch": 1, "loss": float("nan"), "accuracy": 0.5}]}}
    response = TestClient(create_app(odd)).get("/api/model")
    assert response.status_code == 200
    assert response.json()["history"] == {"epochs": 1, "epoch": 1, "loss": None, "accuracy": 0.5}


def test_sample(client, mnist_test):
    X, y = mnist_test
    sample = client.get("/api/sample", params={"index": 1234}).json()
    assert sample["index"] == 1234 and sample["label"] == y[1234] and sample["count"] == 10000
    np.testing.assert_allclose(sample["pixels"], X[1234], atol=1e-4)
    random_one = client.get("/api/sample").json()
    assert 0 <= random_one["index"] < 10000 and random_one["label"] == y[random_one["index"]]


def test_page_and_its_files_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    for path in STATIC_DIR.iterdir():
        # Nothing on the page may come from elsewhere (no CDN, no web fonts).
        assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), path.name
    assert client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]


def test_create_app_refuses_networks_the_page_cannot_use():
    with pytest.raises(DigitnetError, match="784 inputs"):
        create_app(Network([2, 3, 2], seed=0))


# ---------------------------------------------------------------------------
# malformed input: always a 4xx with one line, never a 500


def pixels_body(values) -> bytes:
    return json.dumps({"pixels": values}).encode()


GOOD_PNG = to_png_bytes(np.eye(28, dtype=np.float32), scale=10)
JSON = "application/json"
MALFORMED = {
    "not JSON": (b"{pixels: [1, 2", JSON, 400),
    "not UTF-8": (b'{"pixels": "\xff\xfe"}', JSON, 400),
    "absurdly nested JSON": (b"[" * 100_000, JSON, 400),
    "JSON list": (b"[0.5, 0.5]", JSON, 422),
    "JSON string": (b'"pixels"', JSON, 422),
    "no pixels field": (b'{"pixel": []}', JSON, 422),
    "unknown field": (b'{"pixels": [], "colour": 1}', JSON, 422),
    "pixels not a list": (b'{"pixels": "0.5"}', JSON, 422),
    "783 numbers": (pixels_body([0.5] * 783), JSON, 422),
    "785 numbers": (pixels_body([0.5] * 785), JSON, 422),
    "ragged rows": (pixels_body([[0.5] * 28] * 27 + [[0.5] * 27]), JSON, 422),
    "NaN pixel": (pixels_body([0.5] * 783 + [float("nan")]), JSON, 422),
    "Infinity pixel": (b'{"pixels": [' + b"0.5, " * 783 + b"Infinity]}", JSON, 422),
    "1e999 pixel": (b'{"pixels": [' + b"0.5, " * 783 + b"1e999]}", JSON, 422),
    "huge integer pixel": (b'{"pixels": [' + b"0, " * 783 + b"1" + b"0" * 400 + b"]}", JSON, 422),
    "string pixel": (pixels_body([0.5] * 783 + ["0.5"]), JSON, 422),
    "null pixel": (pixels_body([None] + [0.5] * 783), JSON, 422),
    "boolean pixel": (pixels_body([True] + [0.5] * 783), JSON, 422),
    "nested list pixel": (pixels_body([[0.5]] + [0.5] * 783), JSON, 422),
    "8-bit values": (pixels_body([255] * 784), JSON, 422),
    "negative values": (pixels_body([-0.5] * 784), JSON, 422),
    "preprocess not boolean": (b'{"pixels": [], "preprocess": "yes"}', JSON, 422),
    "blank pixels": (pixels_body([0] * 784), JSON, 422),
    "empty JSON body": (b"", JSON, 400),
    "empty image body": (b"", "image/png", 400),
    "not a PNG": (b"this is not a picture at all", "image/png", 422),
    "JSON sent as PNG": (pixels_body([0.5] * 784), "image/png", 422),
    "truncated PNG": (GOOD_PNG[: len(GOOD_PNG) // 2], "image/png", 422),
    "PNG header only": (GOOD_PNG[:33], "image/png", 422),
    "enormous PNG header": (png_claiming_size(100_000, 100_000), "image/png", 422),
    "PNG over the web limit": (png_claiming_size(2500, 10), "image/png", 422),
    "zero-size PNG header": (png_claiming_size(0, 0), "image/png", 422),
    "blank black PNG": (to_png_bytes(np.zeros(784), scale=10), "image/png", 422),
    "blank white PNG": (to_png_bytes(np.ones(784), scale=10), "image/png", 422),
    "PNG sent as JSON": (GOOD_PNG, JSON, 400),
    "text content type": (b"0.5 0.5", "text/plain", 415),
    "form content type": (b"pixels=0.5", "application/x-www-form-urlencoded", 415),
    "multipart content type": (b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_gets_a_one_line_4xx(client, name):
    body, content_type, status = MALFORMED[name]
    response = client.post("/api/predict", content=body, headers={"content-type": content_type})
    assert_one_line_error(response, status)


@pytest.mark.parametrize("name", ["blank pixels", "blank black PNG", "blank white PNG"])
def test_blank_drawings_are_marked_blank(client, name):
    body, content_type, _ = MALFORMED[name]
    response = client.post("/api/predict", content=body, headers={"content-type": content_type})
    answer = assert_one_line_error(response, 422)
    assert answer["blank"] is True and "blank" in answer["detail"]


def test_other_errors_are_not_marked_blank(client):
    body, content_type, _ = MALFORMED["not a PNG"]
    answer = client.post("/api/predict", content=body, headers={"content-type": content_type}).json()
    assert "blank" not in answer


def test_missing_content_type_is_refused(client):
    response = client.post("/api/predict", content=GOOD_PNG)
    assert "content-type" not in response.request.headers
    assert_one_line_error(response, 415)


def test_body_over_the_limit_is_refused(client):
    assert_one_line_error(post_png(client, b"\x89PNG" + b"\x00" * MAX_BODY_BYTES), 413)

    def chunks():  # no Content-Length: the streamed length must be checked
        for _ in range(12):
            yield b"\x00" * 100_000

    response = client.post("/api/predict", content=chunks(), headers={"content-type": "image/png"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_one_line_error(response, 413)


def test_lying_content_length_is_refused(client):
    request = client.build_request("POST", "/api/predict", content=GOOD_PNG,
                                   headers={"content-type": "image/png"})
    request.headers["content-length"] = "a lot"
    assert_one_line_error(client.send(request), 400)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method(client, method):
    body = assert_one_line_error(client.request(method, "/api/predict"), 405)
    assert "POST" in body["detail"]


@pytest.mark.parametrize("query, status", [
    ("index=-1", 422), ("index=10000", 422), ("index=seven", 422), ("index=1e3", 422), ("index=", 422),
    # What the schema's integer does not allow, though int() or pydantic would read it:
    ("index=05", 422), ("index=%2B5", 422), ("index=%205", 422), ("index=5.0", 422), ("index=5_0", 422),
    ("index=1&index=2", 422), ("index=" + "9" * 5000, 422),
])
def test_bad_sample_index(client, query, status):
    body = assert_one_line_error(client.get(f"/api/sample?{query}"), status)
    assert "index" in body["detail"]


def test_ink_threshold_is_the_same_with_and_without_preprocess(client):
    """Blank means no pixel reaches 0.1 (the schema's rule), compared as sent, not as float32."""
    def post(value, preprocess, where=400):
        x = [0.0] * 784
        x[where] = value
        return client.post("/api/predict", json={"pixels": x, "preprocess": preprocess})

    below = float(np.nextafter(0.1, 0))  # float32(below) == float32(0.1)
    for preprocess in (False, True):
        assert post(0.1, preprocess).status_code == 200
        assert assert_one_line_error(post(below, preprocess), 422)["blank"] is True
    # Pixels are ink on background 0 by contract: ink on the border, or everywhere, is a drawing.
    assert post(1.0, True, where=0).status_code == 200
    full = client.post("/api/predict", json={"pixels": [1.0] * 784, "preprocess": True})
    assert full.status_code == 200 and max(full.json()["input"]) == 1


def test_unknown_path(client):
    assert_one_line_error(client.get("/api/nothing"), 404)
    assert client.get("/docs").status_code == 404  # would load its scripts from a CDN


# ---------------------------------------------------------------------------
# choosing the model


def test_serve_uses_the_last_trained_model_then_the_kept_best(tmp_path, monkeypatch, capsys, model_path):
    from digitnet.files import paths

    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path / "cache"))
    paths.remember_last_model(model_path)
    network, path = serve_cli.find_model(None)
    assert path == model_path.resolve() and network.sizes == [784, 64, 10]
    assert "last model" in capsys.readouterr().out

    # No pointer any more, but a model trained for serve earlier: reused, not retrained.
    (tmp_path / "cache" / "last-model.txt").unlink()
    kept = paths.models_dir() / "best.npz"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(model_path.read_bytes())
    network, path = serve_cli.find_model(None)
    assert path == kept and network.n_params == 50890
    assert "earlier" in capsys.readouterr().out


def test_serve_model_argument_wins(tmp_path, model_path):
    network, path = serve_cli.find_model(str(model_path))
    assert path == model_path and network.sizes == [784, 64, 10]
    with pytest.raises(DigitnetError, match="does not exist"):
        serve_cli.find_model(str(tmp_path / "missing.npz"))


@pytest.mark.parametrize("argv, message", [
    (["--port", "99999"], "a port is 0..65535, got 99999"),
    (["--port", "http"], "expected a port number, got 'http'"),
])
def test_serve_bad_port_is_a_one_line_usage_error(argv, message, capsys):
    from digitnet.app.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_page_url_for_ipv4_and_ipv6():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert serve_cli.page_url(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}/"
    if socket.has_ipv6:
        try:
            sock6 = socket.socket(socket.AF_INET6)
            sock6.bind(("::1", 0))
        except OSError:
            return  # no IPv6 loopback here
        with sock6:
            assert serve_cli.page_url(sock6) == f"http://[::1]:{sock6.getsockname()[1]}/"


# ---------------------------------------------------------------------------
# the real server


def run_serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "digitnet", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def wait_for_url(process: subprocess.Popen, timeout: float = 60) -> str:
    """The page URL ``digitnet serve`` prints (it binds before printing)."""
    import threading

    found: list[str] = []

    def read():
        for line in process.stdout:
            match = re.search(r"http://\S+", line)
            if match:
                found.append(match.group(0))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        process.kill()
        raise AssertionError(f"digitnet serve printed no URL: {process.stderr.read()}")
    return found[0]


def test_real_server_over_http(model_path, mnist_test, confident_digits):
    X, y = mnist_test
    process = run_serve(str(model_path), "--port", "0")
    try:
        url = wait_for_url(process)
        assert url.startswith("http://127.0.0.1:")  # loopback by default
        with httpx.Client(base_url=url, timeout=30) as http:
            page = http.get("/")
            assert page.status_code == 200 and "draw a digit" in page.text
            i = confident_digits[8]
            answer = http.post("/api/predict", content=canvas_png(X[i]),
                               headers={"content-type": "image/png"})
            assert answer.status_code == 200 and answer.json()["digit"] == y[i]
            too_big = http.post("/api/predict", content=b"\x00" * (MAX_BODY_BYTES + 1),
                                headers={"content-type": "image/png"})
            assert_one_line_error(too_big, 413)
            assert_one_line_error(http.post("/api/predict", content=b"{", headers={"content-type": JSON}), 400)
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_busy_port_is_one_line_and_exit_2(model_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        process = run_serve(str(model_path), "--port", str(port))
        out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.strip() == (f"digitnet: error: port {port} on 127.0.0.1 is already in use: "
                           "stop the other server or choose another port with --port")
    assert out == ""
