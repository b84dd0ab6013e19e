"""The web API's OpenAPI schema says exactly what the server accepts.

Schemathesis reads ``/openapi.json`` and sends requests that follow the
schema (each must get a 2xx) and requests that break it (each must get a
4xx), checking every answer against the schema's status codes, content
types and response bodies -- all of its checks.  It runs against a real
``digitnet serve`` subprocess on 127.0.0.1, bounded in examples and time.

Before it, fast in-process tests pin the rules the schema must state, and
that the schema and the server agree on the edge cases (a pixel just below
the ink threshold, an index of "05", ...), without Schemathesis.

Image bodies are the one thing JSON Schema cannot describe ("the bytes of an
image with a digit in it"); ``schemathesis_hooks.py`` tells Schemathesis how
to make them (see docs/web.md).
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("PIL.Image")
pytest.importorskip("schemathesis")
jsonschema_rs = pytest.importorskip("jsonschema_rs")  # comes with schemathesis

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from fastapi.testclient import TestClient  # noqa: E402

from serving import start_serve

from digitnet.app.imaging import MIN_CONTRAST, to_png_bytes  # noqa: E402
from digitnet.app.web.app import MAX_BODY_BYTES, create_app  # noqa: E402
from digitnet.files.modelfile import load_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with:UserWarning")

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
HOOKS = TESTS / "schemathesis_hooks.py"

#: Test cases per operation and generation mode; DIGITNET_SCHEMATHESIS_EXAMPLES overrides.
MAX_EXAMPLES = int(os.environ.get("DIGITNET_SCHEMATHESIS_EXAMPLES", "150"))
#: Fixed, so a failure can be replayed; DIGITNET_SCHEMATHESIS_SEED explores elsewhere.
SEED = int(os.environ.get("DIGITNET_SCHEMATHESIS_SEED", "1"))
#: Hard bound on the Schemathesis run (predict, sample and model: about 400 cases, 5 to
#: 10 s on a 2-core machine; the batch route adds about 200 cases, 7 to 10 s; the six
#: training routes about 1,200 cases, 15 to 25 s).
RUN_TIMEOUT_S = 90


# ---------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def client(small_model_path) -> TestClient:
    return TestClient(create_app(load_model(small_model_path), model_path=str(small_model_path)))


@pytest.fixture(scope="module")
def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def validator(document: dict, name: str):
    """A JSON Schema (2020-12) validator for ``#/components/schemas/<name>`` of ``document``."""
    return jsonschema_rs.validator_for({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{name}",
        "components": document["components"],
    })


def pixels(ink_at: int | None = 300, value: float = 1.0, n: int = 784) -> list:
    x = [0.0] * n
    if ink_at is not None:
        x[ink_at] = value
    return x


# ---------------------------------------------------------------------------
# the rules the schema states


def test_schema_states_the_pixel_rules(document):
    body = document["components"]["schemas"]["PixelsRequest"]
    assert body["required"] == ["pixels"] and body["additionalProperties"] is False
    assert body["properties"]["preprocess"]["type"] == "boolean"
    flat, rows = body["properties"]["pixels"]["anyOf"]
    assert (flat["minItems"], flat["maxItems"]) == (784, 784)
    assert flat["items"] == {"type": "number", "minimum": 0, "maximum": 1}
    assert flat["contains"]["minimum"] == MIN_CONTRAST  # some ink, or the drawing is blank
    assert (rows["minItems"], rows["maxItems"]) == (28, 28)
    assert (rows["items"]["minItems"], rows["items"]["maxItems"]) == (28, 28)
    assert rows["items"]["items"] == flat["items"]


def test_schema_states_the_sample_range_of_the_servers_data_set(document, client):
    (index,) = document["paths"]["/api/sample"]["get"]["parameters"]
    assert index["in"] == "query" and index["required"] is False
    count = client.get("/api/sample").json()["count"]
    assert count == 10000
    assert index["schema"] == {"type": "integer", "minimum": 0, "maximum": count - 1}
    assert document["components"]["schemas"]["Sample"]["properties"]["count"]["const"] == count


def test_schema_lists_content_types_limits_and_every_status(document):
    predict = document["paths"]["/api/predict"]["post"]
    content = predict["requestBody"]["content"]
    assert predict["requestBody"]["required"] is True
    assert set(content) == {"image/png", "image/*", "application/json"}
    assert predict["x-max-body-bytes"] == MAX_BODY_BYTES
    assert all(media["x-max-body-bytes"] == MAX_BODY_BYTES for media in content.values())
    expected = {
        ("/api/predict", "post"): {"200", "400", "413", "415", "422"},
        ("/api/sample", "get"): {"200", "422", "503"},
        ("/api/model", "get"): {"200"},
        ("/api/predict/batch", "post"): {"200", "400", "413", "415", "422"},
    }
    for (path, method), statuses in expected.items():
        responses = document["paths"][path][method]["responses"]
        assert set(responses) == statuses, path
        for status, answer in responses.items():
            schema = answer["content"]["application/json"]["schema"]
            assert (schema["$ref"] == "#/components/schemas/Error") == (status != "200"), (path, status)
    batch = document["paths"]["/api/predict/batch"]["post"]["requestBody"]["content"]
    assert set(batch) == {"application/json", "multipart/form-data"}
    assert all(media["x-max-body-bytes"] == MAX_BODY_BYTES for media in batch.values())
    error = document["components"]["schemas"]["Error"]
    assert error["additionalProperties"] is False and error["required"] == ["detail"]


def test_schema_documents_every_api_route(client, document):
    routes = {(route.path, method.lower()) for route in client.app.routes
              if route.path.startswith("/api/") for method in route.methods if method != "HEAD"}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == routes


# ---------------------------------------------------------------------------
# the schema and the server agree, edge cases included

BELOW_INK = float(np.nextafter(MIN_CONTRAST, 0))  # rounds *up* to 0.1 as float32: compared as sent

JSON_BODIES = {
    "one pixel of ink": {"pixels": pixels()},
    "ink exactly at the threshold": {"pixels": pixels(value=MIN_CONTRAST)},
    "integers 0 and 1": {"pixels": [int(v) for v in pixels()]},
    "28 rows of 28": {"pixels": np.reshape(pixels(), (28, 28)).tolist()},
    "preprocess false": {"pixels": pixels(), "preprocess": False},
    "preprocess true": {"pixels": pixels(), "preprocess": True},
    "all ink, preprocessed": {"pixels": [1.0] * 784, "preprocess": True},
    "ink on the border, preprocessed": {"pixels": pixels(ink_at=0), "preprocess": True},
    # refused
    "no ink": {"pixels": pixels(ink_at=None)},
    "no ink, preprocessed": {"pixels": pixels(ink_at=None), "preprocess": True},
    "ink just below the threshold": {"pixels": pixels(value=BELOW_INK)},
    "empty pixels": {"pixels": []},
    "783 pixels": {"pixels": pixels(n=783)},
    "785 pixels": {"pixels": pixels(n=785)},
    "27 rows": {"pixels": np.reshape(pixels(), (28, 28)).tolist()[:27]},
    "a short row": {"pixels": np.reshape(pixels(), (28, 28)).tolist()[:27] + [[0.5] * 27]},
    "a pixel above 1": {"pixels": pixels(value=1.5)},
    "a negative pixel": {"pixels": pixels(ink_at=5, value=-0.1)},
    "a string pixel": {"pixels": pixels()[:783] + ["0.5"]},
    "a boolean pixel": {"pixels": [True] + pixels()[1:]},
    "a null pixel": {"pixels": [None] + pixels()[1:]},
    "preprocess null": {"pixels": pixels(), "preprocess": None},
    "preprocess a string": {"pixels": pixels(), "preprocess": "yes"},
    "an unknown field": {"pixels": pixels(), "colour": "white"},
    "no pixels field": {"preprocess": True},
    "not an object": pixels(),
    "null": None,
}


@pytest.mark.parametrize("name", list(JSON_BODIES))
def test_schema_and_server_agree_on_json_bodies(client, document, name):
    body = JSON_BODIES[name]
    valid = validator(document, "PixelsRequest").is_valid(body)
    response = client.post("/api/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert (response.status_code == 200) == valid, (valid, response.text[:300])
    answer = response.json()
    assert validator(document, "Prediction" if valid else "Error").is_valid(answer), answer
    if not valid:
        assert response.status_code == 422
    if "ink" in name and not valid:
        assert answer["blank"] is True


@pytest.mark.parametrize("query, status", [
    ("", 200), ("index=0", 200), ("index=9999", 200), ("index=-0", 200),
    ("index=10000", 422), ("index=-1", 422), ("index=" + "9" * 5000, 422), ("index=-" + "9" * 30, 422),
    ("index=", 422), ("index=05", 422), ("index=%2B5", 422), ("index=%205", 422), ("index=5%20", 422),
    ("index=5.0", 422), ("index=5_0", 422), ("index=1e3", 422), ("index=seven", 422),
    ("index=%D9%A3", 422),  # an Arabic-Indic 3: int() would read it
    ("index=1&index=2", 422),
])
def test_sample_index_is_exactly_the_schemas_integer(client, document, query, status):
    response = client.get(f"/api/sample?{query}")
    assert response.status_code == status, response.text[:300]
    answer = response.json()
    assert validator(document, "Sample" if status == 200 else "Error").is_valid(answer), answer
    if status != 200:
        assert "\n" not in answer["detail"] and len(answer["detail"]) < 200


def test_answers_follow_the_schema(client, document, small_model_path):
    png = to_png_bytes(np.eye(28, dtype=np.float32), scale=10)
    checks = [
        (client.post("/api/predict", content=png, headers={"content-type": "image/png"}), "Prediction"),
        (client.post("/api/predict", content=png, headers={"content-type": "image/gif"}), "Prediction"),
        (client.post("/api/predict", content=to_png_bytes(np.zeros(784)), headers={"content-type": "image/png"}),
         "Error"),
        (client.post("/api/predict", content=b"\0" * (MAX_BODY_BYTES + 1), headers={"content-type": "image/png"}),
         "Error"),
        (client.post("/api/predict", content=b"{", headers={"content-type": "application/json"}), "Error"),
        (client.post("/api/predict", content=b"x", headers={"content-type": "text/plain"}), "Error"),
        (client.get("/api/model"), "Model"),
    ]
    for response, name in checks:
        assert validator(document, name).is_valid(response.json()), (name, response.text[:300])
    assert [r.status_code for r, _ in checks] == [200, 200, 422, 413, 400, 415, 200]


# ---------------------------------------------------------------------------
# Schemathesis against a real server


def start_server(model_path: Path) -> tuple[subprocess.Popen, str]:
    """``digitnet serve MODEL --port 0`` and the URL it prints (it binds before printing)."""
    process, url = start_serve(str(model_path), timeout=15)
    return process, url + "/"


def readable_tail(text: str, n: int = 6000) -> str:
    """The end of Schemathesis' output without its very long request bodies."""
    lines = [line if len(line) < 300 else line[:300] + " [...]" for line in text.splitlines()]
    return "\n".join(lines)[-n:]


def schemathesis_command(schema_url: str, reports: Path, config: Path | None = None) -> list[str]:
    """``schemathesis run`` with all checks, positive and negative data, bounded, reporting to ``reports``."""
    return [
        sys.executable, "-m", "schemathesis.cli", *(["--config-file", str(config)] if config else []),
        "run", schema_url,
        "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--continue-on-failure", "--request-timeout", "10",
        # A timing health check would make a busy machine's run fail for no fault of the API.
        "--suppress-health-check", "too_slow",
        "--generation-database", "none", "--no-color",
        "--report", "json,har", "--report-json-path", str(reports / "summary.json"),
        "--report-har-path", str(reports / "requests.har"),
    ]


def finished_training_job(url: str, config: Path) -> str:
    """A training job run to its end on the server, named in a Schemathesis config file.

    Schemathesis cannot make job ids itself (it has no stateful links to
    follow), so half of the ids it sends to /api/train/{job_id}/... are this
    one's (a dictionary), the rest its own (404).  The job's network has the
    served model's layers, so that Try it leaves the Prediction schema as it is.
    """
    import httpx

    job = httpx.post(f"{url}api/train", json={"hidden_layers": [64], "subset": 300, "epochs": 1},
                     timeout=60).json()["job"]
    with httpx.stream("GET", f"{url}api/train/{job}/events", timeout=60) as events:
        for _ in events.iter_lines():       # the stream ends with the job's final event
            pass
    config.write_text(f'[dictionaries.jobs]\nvalues = ["{job}"]\n\n'
                      '[parameters]\n"path.job_id" = { dictionary = "jobs", probability = 0.5 }\n')
    return job


def test_schemathesis_with_all_checks_finds_nothing(small_model_path, tmp_path):
    reports = tmp_path / "reports"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "NO_COLOR": "1"}
    server, url = start_server(small_model_path)
    started = time.monotonic()
    try:
        assert urlsplit(url).hostname == "127.0.0.1"
        config = tmp_path / "schemathesis.toml"
        job = finished_training_job(url, config)
        run = subprocess.run(schemathesis_command(f"{url}openapi.json", reports, config), capture_output=True,
                             text=True, cwd=tmp_path, env=env, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        partial = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"Schemathesis did not finish in {RUN_TIMEOUT_S} s:\n{readable_tail(partial or '')}")
    finally:
        server.terminate()
        _, server_err = server.communicate(timeout=20)
    elapsed = time.monotonic() - started
    output = readable_tail(run.stdout + run.stderr)
    assert run.returncode == 0 and "No issues found" in run.stdout, output
    # A 500 would have been logged by the server even if nothing else noticed it.
    assert "Traceback" not in server_err and "unexpected error" not in server_err, server_err[-3000:]

    # It really ran: every operation, both phases, many cases.
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["complete"], summary
    assert summary["failures"] == [] and summary["errors"] == []
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 4
    assert {name: phase["status"] for name, phase in summary["phases"].items()
            if name != "stateful"} == {"examples": "skip", "coverage": "success", "fuzzing": "success"}
    assert summary["test_cases"]["generated"] >= MAX_EXAMPLES, summary["test_cases"]

    # ... and what it sent, request by request (its HAR record).
    seen: collections.Counter = collections.Counter()
    for entry in json.loads((reports / "requests.har").read_text())["log"]["entries"]:
        request = entry["request"]
        media = next((h["value"] for h in request["headers"] if h["name"].lower() == "content-type"), "")
        media = ("json" if "json" in media else "image" if media.startswith("image/")
                 else "multipart" if media.startswith("multipart/") else "other")
        status = entry["response"]["status"]
        seen[(request["method"], urlsplit(request["url"]).path, media, status // 100)] += 1
    assert not [key for key in seen if key[3] == 5], seen

    def count(method, path, media=None, kind=None):
        return sum(n for (m, p, t, k), n in seen.items()
                   if m == method and p == path and media in (None, t) and kind in (None, k))

    few = max(1, min(10, MAX_EXAMPLES // 15))
    # pixel arrays, read (how many of the ~150 valid bodies hold ink enough depends on the
    # other operations' share of the run's random stream: 4 to 10 with seed 1)
    assert count("POST", "/api/predict", "json", 2) >= max(1, few // 3), seen
    assert count("POST", "/api/predict", "image", 2) >= few, seen  # images of drawings, read
    assert count("POST", "/api/predict", "json", 4) >= few, seen  # broken JSON bodies, refused
    assert count("POST", "/api/predict", "other", 4) >= 1, seen  # other content types, refused
    assert count("GET", "/api/sample", None, 2) >= few, seen
    assert count("GET", "/api/sample", None, 4) >= few, seen  # bad indexes, refused
    assert count("GET", "/api/model", None, 2) >= 1, seen
    batch = "/api/predict/batch"
    assert count("POST", batch, "json", 2) >= few, seen  # batches of pixel arrays, read
    assert count("POST", batch, "multipart", 2) >= 1, seen  # forms of drawings (schemathesis_hooks.py)
    assert count("POST", batch, "json", 4) >= few, seen  # broken batches, refused
    for path in ("/api/predict", "/api/sample", "/api/model", batch):  # other methods: 405
        assert count("DELETE", path, None, 4) >= 1, seen
    # The Train view's routes (tests/test_web_training.py has the rest): recipes started (each
    # stopped at once by schemathesis_hooks.py) and refused; the finished job named in the
    # config file streamed, tried, saved and stopped; other jobs' ids unknown (404).
    assert count("POST", "/api/train", "json", 2) >= 1, seen
    assert count("POST", "/api/train", "json", 4) >= few, seen
    for method, route in (("GET", "/events"), ("POST", "/use"), ("POST", "/save"), ("DELETE", "")):
        assert count(method, f"/api/train/{job}{route}", None, 2) >= 1, (route, seen)
        assert sum(n for (m, p, _, k), n in seen.items()
                   if m == method and p.startswith("/api/train/") and p.endswith(route) and k == 4) >= 1, route
    print(f"\nschemathesis: {summary['test_cases']['generated']} cases in {elapsed:.1f} s, no issues; requests:")
    shown: collections.Counter = collections.Counter()
    for (method, path, media, kind), n in seen.items():   # job ids, real and made up, as one line
        shown[(method, re.sub(r"^/api/train/[^/]+", "/api/train/{job_id}", path), media, kind)] += n
    for (method, path, media, kind), n in sorted(shown.items()):
        print(f"  {method:7} {path:13} {media:6} {kind}xx: {n}")
