"""POST /api/predict/batch, the fast JSON paths, and ``digitnet serve --workers N``.

The same small real network as test_web_api.py ([784, 64, 10], trained once
per session on real MNIST).  Batch answers are held to what /api/predict
answers for the same digit alone; every refusal is one 4xx line; the
OpenAPI schema and the server agree on what a batch may hold; and a real
multi-process server on 127.0.0.1 answers and stops cleanly.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("python_multipart")  # the web extra's form parser
PIL_Image = pytest.importorskip("PIL.Image")

import httpx  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from fastapi.testclient import TestClient  # noqa: E402

from digitnet.app.imaging import to_png_bytes  # noqa: E402
from digitnet.app.web import batch  # noqa: E402
from digitnet.app.web.app import MAX_BODY_BYTES, create_app  # noqa: E402
from digitnet.data import load_mnist  # noqa: E402
from digitnet.files.modelfile import load_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with:UserWarning")

REPO = Path(__file__).resolve().parents[1]
JSON = "application/json"
BATCH = "/api/predict/batch"


@pytest.fixture(scope="module")
def mnist_test():
    X, y = load_mnist("test")
    return X[:300], y[:300]


@pytest.fixture(scope="module")
def client(small_model_path) -> TestClient:
    return TestClient(create_app(load_model(small_model_path), model_path=str(small_model_path)))


def pixels(x: np.ndarray) -> list:
    """A digit as JSON numbers, rounded as /api/sample serves them."""
    return np.round(np.asarray(x, np.float64), 4).tolist()


def post_json(client, body, path: str = BATCH):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={"content-type": JSON})


def post_files(client, parts: list[tuple[str, bytes]], path: str = BATCH):
    return client.post(path, files=[(name, (f"{k}.png", data, "image/png")) for k, (name, data) in enumerate(parts)])


def assert_one_line_error(response, status: int) -> dict:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) <= {"detail", "blank"} and body["detail"].strip(), body
    assert "\n" not in body["detail"] and len(body["detail"]) < 300, body["detail"]
    return body


# ---------------------------------------------------------------------------
# answers


def test_json_batch_answers_are_the_single_answers(client, mnist_test):
    X, y = mnist_test
    digits = [pixels(x) for x in X[:40]]
    answer = post_json(client, {"images": digits})
    assert answer.status_code == 200, answer.text[:300]
    body = answer.json()
    assert body["count"] == 40 and body["errors"] == 0 and [r["index"] for r in body["results"]] == list(range(40))
    for item, digit in zip(body["results"], digits):
        alone = post_json(client, {"pixels": digit}, "/api/predict").json()
        assert item["digit"] == alone["digit"] and item["label"] == alone["label"]
        # Together or alone, the network's float32 sums may round apart in
        # the last of the six decimals the API gives.
        np.testing.assert_allclose(item["probabilities"], alone["probabilities"], atol=2e-6)
        assert item["confidence"] == max(item["probabilities"])
    accuracy = np.mean([r["digit"] == t for r, t in zip(body["results"], y[:40])])
    assert accuracy >= 0.9


def test_json_batch_takes_rows_and_preprocessing(client, mnist_test):
    X, _ = mnist_test
    flat = post_json(client, {"images": [pixels(X[0]), pixels(X[1])]}).json()
    rows = post_json(client, {"images": [np.reshape(pixels(X[0]), (28, 28)).tolist(), pixels(X[1])]}).json()
    assert [r["probabilities"] for r in rows["results"]] == [r["probabilities"] for r in flat["results"]]
    # preprocess: each digit normalised first, exactly as /api/predict does it.
    shifted = np.roll(X[2].reshape(28, 28), 3, axis=1).ravel()
    together = post_json(client, {"images": [pixels(shifted)], "preprocess": True}).json()["results"][0]
    alone = post_json(client, {"pixels": pixels(shifted), "preprocess": True}, "/api/predict").json()
    assert together["digit"] == alone["digit"]
    np.testing.assert_allclose(together["probabilities"], alone["probabilities"], atol=2e-6)


def test_blank_json_items_are_their_own_errors(client, mnist_test):
    X, _ = mnist_test
    faint = [0.0] * 783 + [float(np.nextafter(0.1, 0))]  # just below the ink threshold
    body = post_json(client, {"images": [pixels(X[0]), [0] * 784, faint, pixels(X[1])]}).json()
    assert body["count"] == 4 and body["errors"] == 2
    ok0, blank, blank2, ok3 = body["results"]
    assert "digit" in ok0 and "digit" in ok3 and ok3["index"] == 3
    for item, k in ((blank, 1), (blank2, 2)):
        assert item["index"] == k and item["blank"] is True and "blank" in item["detail"]
        assert set(item) == {"index", "detail", "blank"}
    # The same with "preprocess": the blank rule does not change.
    pre = post_json(client, {"images": [[0] * 784, pixels(X[0])], "preprocess": True}).json()
    assert pre["results"][0]["blank"] is True and "digit" in pre["results"][1]


def test_multipart_batch_reads_images_with_errors_in_their_place(client, mnist_test):
    X, y = mnist_test
    pngs = [to_png_bytes(X[k], scale=10) for k in range(3)]
    truncated = pngs[0][: len(pngs[0]) // 2]
    parts = [("images", pngs[0]), ("images", to_png_bytes(np.zeros(784), scale=10)), ("images", b"not a picture"),
             ("images", pngs[1]), ("images", truncated), ("images", b""), ("images", pngs[2])]
    response = post_files(client, parts)
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert body["count"] == 7 and body["errors"] == 4
    results = body["results"]
    assert [r["index"] for r in results] == list(range(7))
    for k, png in ((0, pngs[0]), (3, pngs[1]), (6, pngs[2])):
        alone = client.post("/api/predict", content=png, headers={"content-type": "image/png"}).json()
        assert results[k]["digit"] == alone["digit"]
        np.testing.assert_allclose(results[k]["probabilities"], alone["probabilities"], atol=2e-6)
    assert results[1]["blank"] is True
    for k, words in ((2, "not a readable image"), (4, "truncated or corrupt"), (5, "empty")):
        assert words in results[k]["detail"] and "blank" not in results[k], results[k]
        assert "\n" not in results[k]["detail"]


def test_multipart_pixel_budget_refuses_images_past_it(client, mnist_test, monkeypatch):
    X, _ = mnist_test
    png = to_png_bytes(X[0], scale=10)  # 280 x 280
    monkeypatch.setattr(batch, "MAX_BATCH_PIXELS", 2 * 280 * 280)
    body = post_files(client, [("images", png)] * 3).json()
    assert [("digit" in r) for r in body["results"]] == [True, True, False]
    assert "pixels in all" in body["results"][2]["detail"] and body["errors"] == 1


def test_multipart_parts_without_a_filename_are_images_too(client, mnist_test):
    X, _ = mnist_test
    png = to_png_bytes(X[0], scale=10)
    boundary = "digitnet-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    response = client.post(BATCH, content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 200 and "digit" in response.json()["results"][0]


def test_answers_follow_the_batch_schema(client, mnist_test):
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    X, _ = mnist_test
    document = client.get("/openapi.json").json()
    check = jsonschema_rs.validator_for({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                         "$ref": "#/components/schemas/BatchAnswer",
                                         "components": document["components"]})
    answers = [post_json(client, {"images": [pixels(X[0]), [0] * 784]}).json(),
               post_files(client, [("images", b"nope"), ("images", to_png_bytes(X[1], scale=10))]).json()]
    for answer in answers:
        assert check.is_valid(answer), answer


# ---------------------------------------------------------------------------
# refusals: the whole request, one line


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[bytes, str]:
    chunks = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x.png\"\r\n"
              "Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in parts]
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


GOOD = [0.0] * 300 + [1.0] + [0.0] * 483
PNG = to_png_bytes(np.eye(28, dtype=np.float32), scale=10)
REFUSED = {
    # name: (body, content type, status, words the detail must contain)
    "not JSON": (b'{"images": [', JSON, 400, "not valid JSON"),
    "JSON list": (b"[[0.5]]", JSON, 422, "expected a JSON object"),
    "no images field": (b'{"pixels": []}', JSON, 422, "unknown field 'pixels'"),
    "images missing": (b'{"preprocess": true}', JSON, 422, '"images" field is missing'),
    "images not a list": (json.dumps({"images": "GOOD"}).encode(), JSON, 422, '"images" must be a list'),
    "no images": (b'{"images": []}', JSON, 422, "no images"),
    "too many images": (json.dumps({"images": [GOOD] * (batch.MAX_BATCH_ITEMS + 1)}).encode(), JSON, 422,
                        f"more than the {batch.MAX_BATCH_ITEMS} allowed"),
    "783 numbers": (json.dumps({"images": [GOOD, GOOD[:783]]}).encode(), JSON, 422, "images[1] must hold 784"),
    "pixel above 1": (json.dumps({"images": [GOOD, GOOD[:5] + [1.5] + GOOD[6:]]}).encode(), JSON, 422,
                      "images[1][5] is 1.5"),
    "boolean pixel": (json.dumps({"images": [[True] + GOOD[1:]]}).encode(), JSON, 422, "images[0][0] is a boolean"),
    "string pixel": (json.dumps({"images": [GOOD[:783] + ["0.5"]]}).encode(), JSON, 422, "images[0][783] is a string"),
    "NaN pixel": (b'{"images": [[' + b"0, " * 783 + b"NaN]]}", JSON, 422, "finite"),
    "ragged rows": (json.dumps({"images": [[[0.5] * 28] * 27 + [[0.5] * 27]]}).encode(), JSON, 422, "row 27 has 27"),
    "preprocess not boolean": (json.dumps({"images": [GOOD], "preprocess": 1}).encode(), JSON, 422,
                               '"preprocess" must be true or false'),
    "unknown field": (json.dumps({"images": [GOOD], "colour": "white"}).encode(), JSON, 422, "unknown field 'colour'"),
    "empty body": (b"", JSON, 400, "empty"),
    "an image body": (PNG, "image/png", 415, 'unsupported Content-Type "image/png"'),
    "text body": (b"0.5", "text/plain", 415, "unsupported Content-Type"),
    "no Content-Type": (b"{}", "", 415, "unsupported Content-Type none"),
    "multipart without a boundary": (_multipart([("images", PNG)])[0], "multipart/form-data", 400, "no boundary"),
    "multipart cut short": (_multipart([("images", PNG)])[0][:-40], _multipart([])[1], 400, "ends before"),
    "multipart with another part": (*_multipart([("images", PNG), ("colour", b"white")]), 422,
                                    "unknown form field 'colour'"),
    "multipart without parts": (b"--b0undary--\r\n", _multipart([])[1], 422, "no images"),
    "multipart with too many parts": (*_multipart([("images", b"x")] * (batch.MAX_BATCH_ITEMS + 1)), 422,
                                      "more than the"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_bad_batches_are_refused_with_one_line(client, name):
    body, content_type, status, words = REFUSED[name]
    headers = {"content-type": content_type} if content_type else {}
    answer = assert_one_line_error(client.post(BATCH, content=body, headers=headers), status)
    assert words in answer["detail"], answer["detail"]


def test_batch_body_over_the_limit_is_refused(client):
    over = b"\0" * (MAX_BODY_BYTES + 1)
    assert_one_line_error(client.post(BATCH, content=over, headers={"content-type": JSON}), 413)

    def chunks():  # no Content-Length: the streamed length must be checked
        for _ in range(11):
            yield b"\0" * 100_000

    assert_one_line_error(client.post(BATCH, content=chunks(), headers={"content-type": JSON}), 413)
    files = [("images", ("big.png", b"\0" * 600_000, "image/png"))] * 2
    assert_one_line_error(client.post(BATCH, files=files), 413)


def test_schema_and_server_agree_on_batch_bodies(client):
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    document = client.get("/openapi.json").json()
    check = jsonschema_rs.validator_for({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                         "$ref": "#/components/schemas/BatchPixelsRequest",
                                         "components": document["components"]})
    cases = [{"images": [GOOD]}, {"images": [[0] * 784]}, {"images": [GOOD], "preprocess": True},
             {"images": [np.reshape(GOOD, (28, 28)).tolist()]}, {"images": [GOOD] * batch.MAX_BATCH_ITEMS}]
    cases += [json.loads(body) for body, media, status, _ in REFUSED.values() if media == JSON and status == 422
              and b"NaN" not in body]  # JSON that parses, refused
    for body in cases:
        response = post_json(client, body)
        assert (response.status_code == 200) == check.is_valid(body), (str(body)[:200], response.text[:200])
    # ... and it says what the route answers.
    route = document["paths"][BATCH]["post"]
    assert set(route["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert set(route["responses"]) == {"200", "400", "413", "415", "422"}
    assert route["x-max-body-bytes"] == MAX_BODY_BYTES
    assert document["components"]["schemas"]["BatchPixelsRequest"]["properties"]["images"]["maxItems"] == \
        batch.MAX_BATCH_ITEMS


# ---------------------------------------------------------------------------
# the fast JSON paths give what the full checks give


@pytest.mark.parametrize("body", [
    {"pixels": GOOD}, {"pixels": GOOD, "preprocess": True}, {"pixels": [0, 1] * 392},
    {"pixels": [1e-300] * 783 + [1.0]}, {"pixels": [-0.0] * 783 + [1]},
])
def test_fast_single_decoding_agrees_with_the_full_checks(body):
    from digitnet.app.web.app import _pixels_from_json

    raw = json.dumps(body).encode()
    fast = batch.decode_pixels(raw)
    assert fast is not None
    full = _pixels_from_json(raw)
    np.testing.assert_array_equal(fast[0], full[0])
    assert fast[1] == full[1]


def test_answers_without_msgspec_are_the_same(client, mnist_test, monkeypatch):
    X, _ = mnist_test
    bodies = [({"images": [pixels(X[0]), [0] * 784]}, BATCH), ({"pixels": pixels(X[1])}, "/api/predict")]
    fast = [post_json(client, body, path).json() for body, path in bodies]
    monkeypatch.setattr(batch, "msgspec", None)
    assert batch.decode_pixels(json.dumps({"pixels": GOOD}).encode()) is None
    slow = [post_json(client, body, path).json() for body, path in bodies]
    assert slow == fast


# ---------------------------------------------------------------------------
# digitnet serve --workers N: a real multi-process server


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_serve_with_two_workers_answers_and_stops(small_model_path, mnist_test):
    X, y = mnist_test
    process = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", str(small_model_path),
                                "--port", "0", "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("http://" in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        banner = "".join(lines)
        url = re.search(r"http://\S+", banner).group(0)
        assert url.startswith("http://127.0.0.1:") and "2 worker processes" in banner, banner
        # The socket listens before the workers start: requests wait for them.
        with httpx.Client(base_url=url, timeout=60) as http:
            one = http.post("/api/predict", json={"pixels": pixels(X[0])})
            assert one.status_code == 200 and one.json()["digit"] == y[0]
            png = http.post("/api/predict", content=to_png_bytes(X[1], scale=10), headers={"content-type": "image/png"})
            assert png.status_code == 200 and png.json()["digit"] == y[1]
            many = http.post(BATCH, json={"images": [pixels(x) for x in X[:20]]})
            assert many.status_code == 200 and many.json()["errors"] == 0
        for _ in range(8):  # fresh connections, so that both workers may take some
            with httpx.Client(base_url=url, timeout=60) as http:
                assert http.get("/api/model").status_code == 200
        if sys.platform.startswith("linux"):
            workers = [c for c in _children(process.pid) if "multiprocessing.spawn" in _cmdline(c)]
            assert len(workers) == 2, [(c, _cmdline(c)) for c in _children(process.pid)]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        reader.join(5)
    assert process.returncode == 0, err[-2000:]
    assert "server stopped" in "".join(lines) + out
    assert "Traceback" not in err, err[-2000:]
    if sys.platform.startswith("linux"):
        for pid in workers:  # stopped with their parent
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.parametrize("value, words", [("0", "1..64"), ("65", "1..64"), ("two", "expected a number of processes")])
def test_bad_workers_is_a_one_line_usage_error(small_model_path, value, words):
    run = subprocess.run([sys.executable, "-m", "digitnet", "serve", str(small_model_path), "--workers", value],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 2 and words in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 3  # usage line(s) and the one error line


def test_worker_app_needs_the_model_named(monkeypatch, small_model_path):
    from digitnet.app.cli import serve
    from digitnet.errors import DigitnetError

    monkeypatch.delenv(serve.MODEL_ENV, raising=False)
    with pytest.raises(DigitnetError, match=serve.MODEL_ENV):
        serve.worker_app()
    monkeypatch.setenv(serve.MODEL_ENV, str(small_model_path))
    app = serve.worker_app()
    assert any(getattr(route, "path", None) == BATCH for route in app.routes)


def test_http_stack_is_the_fast_one_when_installed():
    from digitnet.app.cli.serve import http_stack

    loop, http = http_stack()
    try:
        import uvloop  # noqa: F401
        assert loop == "uvloop"
    except ImportError:
        assert loop == "asyncio"
    try:
        import httptools  # noqa: F401
        assert http == "httptools"
    except ImportError:
        assert http == "h11"
