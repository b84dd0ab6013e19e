"""The Train view's API, against a real ``digitnet serve`` on 127.0.0.1, training on real MNIST.

The job lifecycle (start, events, Try it, Save), the order and rate of the
Server-Sent Events, a client joining late, Stop within one batch, one job at
a time (409), a 422 for every kind of bad field, the caps, and each event
and answer against the OpenAPI document the server publishes.  Jobs train
on 2,000-image subsets, so each takes a fraction of a second of training.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
jsonschema_rs = pytest.importorskip("jsonschema_rs")  # comes with schemathesis

from serving import serving

from digitnet.app.web.training import (
    FIELDS,
    WEB_PRESETS,
    Trainer,
    TrainLimits,
    plan_recipe,
    training_bytes,
    valid_losses,
)
from digitnet.data import load_mnist, write_kaggle_csv
from digitnet.files.modelfile import load_model
from digitnet.nn.activations import ACTIVATIONS
from digitnet.nn.losses import LOSSES
from digitnet.nn.optimizers import OPTIMIZERS

REPO = Path(__file__).resolve().parents[1]
LIMITS = TrainLimits()
FINAL = ("done", "diverged", "cancelled", "error")
#: A quick job: the default preset on 2,000 images.
QUICK = {"subset": 2000, "epochs": 1}


# ---------------------------------------------------------------------------
# the server and its events


@pytest.fixture(scope="module")
def server(small_model_path):
    """``digitnet serve MODEL --port 0``: its URL (the session's cache folder is its save folder)."""
    with serving(str(small_model_path)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def document(client) -> dict:
    return client.get("/openapi.json").json()


def validator(document: dict, name: str):
    return jsonschema_rs.validator_for({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{name}", "components": document["components"]})


@dataclass
class Event:
    id: int
    name: str
    data: dict


def read_events(http, job: str, *, last_id: int | None = None, until=None, into: list | None = None) -> list[Event]:
    """The job's events as its SSE stream sends them (until the stream ends, or ``until(events)``)."""
    out = [] if into is None else into
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    with http.stream("GET", f"/api/train/{job}/events", headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict = {}
        for line in response.iter_lines():
            if line:
                if not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    fields[key] = value
                continue
            if "data" in fields:
                out.append(Event(int(fields["id"]), fields["event"], json.loads(fields["data"])))
                if until is not None and until(out):
                    break
            fields = {}
    return out


def start(http, body: dict) -> str:
    response = http.post("/api/train", json=body)
    assert response.status_code == 202, response.text
    return response.json()["job"]


def one_line_naming(response, field: str) -> str:
    detail = response.json()["detail"]
    assert "\n" not in detail and len(detail) < 400, detail
    assert field in detail, (field, detail)
    return detail


def stop_all(http) -> None:
    for job in http.get("/api/train").json()["jobs"]:
        if job["state"] == "running":
            http.delete(f"/api/train/{job['job']}")


# ---------------------------------------------------------------------------
# what can be trained


def test_options_come_from_the_cores_registries(client, document):
    options = client.get("/api/train").json()
    assert validator(document, "TrainOptions").is_valid(options)
    assert options["activations"] == list(ACTIVATIONS)
    assert options["losses"] == list(LOSSES)
    assert set(options["optimizers"]) == set(OPTIMIZERS)
    assert options["optimizers"]["adam"]["hyperparameters"].keys() == OPTIMIZERS["adam"].hyperparameters.keys()
    assert list(options["presets"]) == list(WEB_PRESETS) and "xor" not in options["presets"]
    # Which output goes with which loss: what Network itself accepts.
    assert options["valid_losses"]["softmax"] == list(LOSSES)
    assert "cross_entropy" not in options["valid_losses"]["relu"]
    assert options["limits"]["max_width"] == LIMITS.max_width


def test_the_schema_states_the_caps(document):
    request = document["components"]["schemas"]["TrainRequest"]
    hidden = request["properties"]["hidden_layers"]
    assert hidden["maxItems"] == LIMITS.max_hidden_layers and hidden["items"]["maximum"] == LIMITS.max_width
    assert request["properties"]["epochs"]["maximum"] == LIMITS.max_epochs
    assert request["properties"]["subset"]["maximum"] == LIMITS.max_subset
    assert request["x-max-training-bytes"] == LIMITS.max_memory_bytes
    assert request["additionalProperties"] is False and list(request["properties"]) == list(FIELDS)
    post = document["paths"]["/api/train"]["post"]
    assert set(post["responses"]) == {"202", "400", "409", "413", "415", "422", "503"}
    assert post["x-limits"]["max_memory_bytes"] == LIMITS.max_memory_bytes


# ---------------------------------------------------------------------------
# a job from start to Try it and Save


def test_a_job_from_start_to_try_it_and_save(client, document):
    stop_all(client)
    response = client.post("/api/train", json={**QUICK, "epochs": 2, "seed": 3})
    assert response.status_code == 202, response.text
    status = response.json()
    assert validator(document, "TrainJob").is_valid(status), status
    assert status["state"] == "running" and status["recipe"]["subset"] == 2000
    events = read_events(client, status["job"])

    # The order: start, then the initial weights, ..., epochs 1 and 2, exactly one final event, last.
    names = [e.name for e in events]
    assert names[0] == "start" and names[1] == "weights" and events[1].data["step"] == 0
    assert names[-1] == "done" and sum(n in FINAL for n in names) == 1
    assert [e.id for e in events] == sorted({e.id for e in events})
    assert [e.data["epoch"] for e in events if e.name == "epoch"] == [1, 2]
    schemas = {"start": "TrainEventStart", "progress": "TrainEventProgress", "weights": "TrainEventWeights",
               "epoch": "TrainEventEpoch", "done": "TrainEventFinal"}
    for event in events:
        assert validator(document, schemas[event.name]).is_valid(event.data), (event.name, event.data)

    start_event = events[0].data
    assert start_event["n_train"] == 2000 and start_event["batches"] == 32  # 2,000 images, batches of 64
    assert start_event["held_out"] == {"set": "test", "size": 10000}      # 'best' keeps no validation set

    # Curve points: every few steps, in order, up to the last step; at most ~10 progress events a second.
    progress = [e.data for e in events if e.name == "progress"]
    steps = [p["step"] for event in progress for p in event["points"]]
    assert len(steps) >= 8 and steps == sorted(set(steps)) and steps[-1] == 64
    gaps = np.diff([p["seconds"] for p in progress])
    assert (gaps[:-1] >= LIMITS.progress_every_s - 1e-3).all()     # the last one is the final flush
    weights = [e.data for e in events if e.name == "weights"]
    w_gaps = np.diff([w["seconds"] for w in weights])
    assert (w_gaps[1:-1] >= LIMITS.weights_every_s - 1e-3).all()    # besides the first and the last
    assert weights[-1]["step"] == 64 and weights[0]["units"] == 64 and weights[0]["of"] == 256
    assert weights[0]["data"] != weights[-1]["data"]                # the tiles changed as it learned

    # Each epoch: its history record, the held-out accuracy and a confusion matrix that adds up.
    for event in (e.data for e in events if e.name == "epoch"):
        matrix = np.array(event["validation"]["confusion"])
        assert matrix.sum() == 10000
        assert event["validation"]["accuracy"] == pytest.approx(np.trace(matrix) / 10000)
        assert event["record"]["epoch"] == event["epoch"] and event["record"]["loss"] > 0
    final = events[-1].data
    assert final["usable"] and final["steps"] == 64 and final["epochs_done"] == 2
    assert 0.5 < final["test_accuracy"] <= 1

    # Try it: the Draw view reads with this network now.
    used = client.post(f"/api/train/{status['job']}/use")
    assert used.status_code == 200 and used.json()["serving"] is True
    model = client.get("/api/model").json()
    assert model["sizes"] == [784, 256, 128, 10] and model["recipe"]["name"] == "best"
    assert model["accuracy"]["test"] == pytest.approx(final["test_accuracy"], abs=1e-4)
    assert client.get("/openapi.json").json()["components"]["schemas"]["Prediction"]["properties"][
        "activations"]["maxItems"] == 2

    # Save: a model file in the server's folder, written whole; it reads as the server does.
    saved = client.post(f"/api/train/{status['job']}/save")
    assert saved.status_code == 200, saved.text
    answer = saved.json()
    assert validator(document, "TrainSaved").is_valid(answer)
    path = Path(answer["path"])
    assert path.name == answer["name"] == f"web-best-{status['job']}.npz" and path.is_file()
    assert not list(path.parent.glob(f".{path.name}.*"))          # no temporary file left
    network = load_model(path)
    assert len(network.metadata["history"]["records"]) == 2
    X, _ = load_mnist("test")
    for i in range(5):
        read = client.post("/api/predict", json={"pixels": X[i].tolist()}).json()
        assert read["digit"] == int(network.predict(X[i])[0])


def test_a_late_client_gets_everything_so_far_then_the_rest(client):
    stop_all(client)
    job = start(client, {**QUICK, "epochs": 2})
    live = read_events(client, job)                                   # from the start
    late = read_events(client, job)                                   # after it is over
    weights = [e.id for e in live if e.name == "weights"]
    # The same events, in the same order, except that of the weights only the first and latest are kept.
    assert [e.id for e in late] == [e.id for e in live if e.name != "weights" or e.id in (weights[0], weights[-1])]
    assert late[-1].name == "done" and late[0].name == "start"
    # Last-Event-ID resumes after that event (what EventSource sends on reconnecting).
    middle = late[len(late) // 2].id
    resumed = read_events(client, job, last_id=middle)
    assert [e.id for e in resumed] == [e.id for e in late if e.id > middle]


def test_stop_within_one_batch_one_job_at_a_time_and_predictions_meanwhile(client):
    stop_all(client)
    job = start(client, {"epochs": 3, "seed": 1})                    # all 60,000 images: long enough to stop
    watched: list[Event] = []
    reader = threading.Thread(target=read_events, args=(client, job), kwargs={"into": watched}, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not any(e.name == "progress" for e in watched):
        assert time.monotonic() < deadline and reader.is_alive(), watched
        time.sleep(0.05)

    # One job at a time: another is refused while this one runs, with the way out.
    second = client.post("/api/train", json=QUICK)
    assert second.status_code == 409 and job in one_line_naming(second, "already running")
    # A client joining now gets the past first: the start, the first weights, the progress so far.
    late = read_events(client, job, until=lambda events: any(e.name == "progress" for e in events))
    assert [e.name for e in late[:2]] == ["start", "weights"] and late[0].id == watched[0].id
    # The drawing page keeps answering while it trains.
    X, _ = load_mnist("test")
    assert client.post("/api/predict", json={"pixels": X[0].tolist()}).status_code == 200

    stopped = client.delete(f"/api/train/{job}")
    assert stopped.status_code == 200, stopped.text
    answer = stopped.json()
    assert answer["state"] == "cancelled"
    reader.join(60)
    final = watched[-1]
    assert final.name == "cancelled" and sum(e.name in FINAL for e in watched) == 1
    # Stopped within one batch of being asked.
    assert answer["stop_requested_at_step"] <= final.data["steps"] <= answer["stop_requested_at_step"] + 1
    assert final.data["steps"] < 3 * 938
    # Stopping again changes nothing; a new job may start at once.
    assert client.delete(f"/api/train/{job}").json()["steps"] == final.data["steps"]
    assert client.post(f"/api/train/{job}/use").status_code == 200     # what it had learned, to try
    client.delete(f"/api/train/{start(client, QUICK)}")


def test_a_diverging_run_is_shown_as_such(client):
    stop_all(client)
    job = start(client, {**QUICK, "lr": 1000, "schedule": "constant"})
    events = read_events(client, job)
    final = events[-1]
    assert final.name == "diverged" and final.data["usable"] is False
    assert "too high" in final.data["detail"] and final.data["suggested_lr"] == pytest.approx(100)
    assert "\n" not in final.data["detail"]
    for action in ("use", "save"):
        refused = client.post(f"/api/train/{job}/{action}")
        assert refused.status_code == 409 and "diverged" in refused.json()["detail"]


# ---------------------------------------------------------------------------
# refusals: one line each, naming the field


BAD_RECIPES = {
    "unknown preset": ({"preset": "lenet"}, "preset"),
    "the xor preset": ({"preset": "xor"}, "xor"),
    "unknown field": ({"layers": [100]}, "layers"),
    "not an object": ([1, 2], "object"),
    "hidden layers not a list": ({"hidden_layers": "100,10"}, "hidden_layers"),
    "a layer of 0 units": ({"hidden_layers": [100, 0]}, "hidden_layers[1]"),
    "a layer of 2.5 units": ({"hidden_layers": [2.5]}, "hidden_layers[0]"),
    "too wide": ({"hidden_layers": [LIMITS.max_width + 1]}, "hidden_layers[0]"),
    "too deep": ({"hidden_layers": [10] * (LIMITS.max_hidden_layers + 1)}, "hidden_layers"),
    "unknown activation": ({"activation": "swish"}, "activation"),
    "an alias, not a name": ({"activation": "linear"}, "activation"),
    "unknown loss": ({"loss": "hinge"}, "loss"),
    "output and loss that do not go together": ({"output": "relu", "loss": "cross_entropy"}, "loss"),
    "an output the preset's loss does not take": ({"output": "tanh"}, "output"),
    "unknown optimizer": ({"optimizer": "rmsprop"}, "optimizer"),
    "a setting the optimizer does not take": ({"optimizer": "sgd", "momentum": 0.9}, "momentum"),
    "a setting the preset's optimizer does not take": ({"beta1": 0.8}, "beta1"),
    "momentum of 1": ({"momentum": 1.0}, "momentum"),
    "lr 0": ({"lr": 0}, "lr"),
    "lr a string": ({"lr": "fast"}, "lr"),
    "lr a boolean": ({"lr": True}, "lr"),
    "lr huge": ({"lr": 1e300}, "lr"),
    "negative l2": ({"l2": -1}, "l2"),
    "batch size 0": ({"batch_size": 0}, "batch_size"),
    "epochs 0": ({"epochs": 0}, "epochs"),
    "epochs over the cap": ({"epochs": LIMITS.max_epochs + 1}, "epochs"),
    "epochs 1.5": ({"epochs": 1.5}, "epochs"),
    "shift 9": ({"shift": 9}, "shift"),
    "unknown schedule": ({"schedule": "exponential"}, "schedule"),
    "subset 0": ({"subset": 0}, "subset"),
    "subset over the cap": ({"subset": LIMITS.max_subset + 1}, "subset"),
    "negative seed": ({"seed": -1}, "seed"),
    "seed null": ({"seed": None}, "seed"),
    "over the memory cap": ({"hidden_layers": [1024] * 4, "batch_size": None}, "batch_size"),
}


@pytest.mark.parametrize("name", list(BAD_RECIPES))
def test_a_bad_field_is_a_422_naming_it(client, document, name):
    body, field = BAD_RECIPES[name]
    response = client.post("/api/train", json=body)
    assert response.status_code == 422, response.text
    one_line_naming(response, field)
    # The schema says so too -- but for the memory cap, which JSON Schema cannot state (x-max-training-bytes).
    if name == "over the memory cap":
        assert validator(document, "TrainRequest").is_valid(body)
        assert training_bytes(body) > LIMITS.max_memory_bytes
    else:
        assert not validator(document, "TrainRequest").is_valid(body), body


GOOD_RECIPES = [
    {},
    {"preset": "nielsen", "hidden_layers": [], "output": "relu"},     # its quadratic loss takes any output
    {"output": "relu", "loss": "mse"},
    {"optimizer": "adam", "beta1": 0.8, "eps": 1e-7},
    {"momentum": 0.5},                                                # best's nesterov takes it
    {"hidden_layers": [LIMITS.max_width] * LIMITS.max_hidden_layers, "subset": 100},   # at the caps
    {"epochs": LIMITS.max_epochs, "subset": 100, "batch_size": None},
    {"preset": "zhang", "subset": 1500},
    {"hidden_layers": [16.0], "epochs": 2.0, "seed": 4294967295},     # whole numbers written as 16.0
]


@pytest.mark.parametrize("body", GOOD_RECIPES, ids=[json.dumps(b)[:60] for b in GOOD_RECIPES])
def test_recipes_within_the_schema_and_caps_are_accepted(client, document, body):
    assert validator(document, "TrainRequest").is_valid(body)
    stop_all(client)
    response = client.post("/api/train", json=body)
    assert response.status_code == 202, response.text
    stopped = client.delete(f"/api/train/{response.json()['job']}")
    assert stopped.json()["state"] in FINAL


@pytest.mark.parametrize("content, headers, status", [
    (b"", {"content-type": "application/json"}, 400),
    (b"{", {"content-type": "application/json"}, 400),
    (b'{"lr": NaN}', {"content-type": "application/json"}, 400),
    (b"{}", {"content-type": "text/plain"}, 415),
    (b"{}", {}, 415),
    (b'{"seed": 0' + b" " * 20000 + b"}", {"content-type": "application/json"}, 413),
])
def test_bodies_that_are_not_a_json_recipe(client, content, headers, status):
    response = client.post("/api/train", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert "\n" not in response.json()["detail"]


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/train/0123456789ab/events"), ("DELETE", "/api/train/0123456789ab"),
    ("POST", "/api/train/0123456789ab/use"), ("POST", "/api/train/0123456789ab/save"),
    ("GET", "/api/train/NOT-A-JOB/events"),
])
def test_unknown_jobs_are_404(client, method, path):
    response = client.request(method, path)
    assert response.status_code == 404 and "no training job" in response.json()["detail"]


def test_a_bad_last_event_id_is_422(client):
    job = client.get("/api/train").json()["jobs"][-1]["job"]
    response = client.get(f"/api/train/{job}/events", headers={"Last-Event-ID": "seven"})
    assert response.status_code == 422 and "Last-Event-ID" in response.json()["detail"]


# ---------------------------------------------------------------------------
# in process: the schema's rules are the core's, and a job that fails says so


def test_the_schemas_rules_between_fields_agree_with_the_core(document):
    """Every output x loss pair and every optimiser x setting: schema-valid exactly when the core accepts."""
    check = validator(document, "TrainRequest")
    bodies = [{"output": o, "loss": l} for o in ACTIVATIONS for l in LOSSES]
    bodies += [{"output": o} for o in ACTIVATIONS] + [{"loss": l, "preset": p} for l in LOSSES for p in WEB_PRESETS]
    bodies += [{"optimizer": o, name: 0.5} for o in OPTIMIZERS for name in ("momentum", "beta1", "beta2", "eps")]
    bodies += [{name: 0.5, "preset": p} for p in WEB_PRESETS for name in ("momentum", "beta2")]
    for body in bodies:
        try:
            plan_recipe({**body, "subset": 100}, allocate=False)
            accepted = True
        except Exception as exc:                # noqa: BLE001 - ApiError 422
            assert getattr(exc, "status", None) == 422, exc
            accepted = False
        assert check.is_valid({**body, "subset": 100}) == accepted, body
    assert set(valid_losses()["relu"]) == {"quadratic", "mse"}


def test_a_job_that_fails_ends_with_one_error_line(tmp_path):
    """Data without a test set or a validation split: nothing to score each epoch on."""
    X, y = load_mnist("train")
    csv = tmp_path / "train.csv"
    write_kaggle_csv(csv, np.rint(X[:300] * 255).astype(np.uint8), y[:300])
    trainer = Trainer(data=str(csv))
    job = trainer.start(trainer.plan({"subset": 100, "epochs": 1}))
    assert job.finished.wait(60)
    events, ended = job.events_after(-1)
    assert ended and [e.name for e in events] == ["error"]
    detail = json.loads(events[0].text)["detail"]
    assert job.state == "error" and "validation" in detail and "\n" not in detail
    assert trainer.options()["jobs"][0]["usable"] is False


def test_a_server_of_several_processes_does_not_train(small_model_path, monkeypatch):
    """digitnet serve --workers N: each process would hold its own jobs, so none trains (a 503 that says why)."""
    import warnings

    from digitnet.app.cli import serve

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with")
        from fastapi.testclient import TestClient

    monkeypatch.setenv(serve.MODEL_ENV, str(small_model_path))
    with TestClient(serve.worker_app()) as http:
        refused = http.post("/api/train", json=QUICK)
        assert refused.status_code == 503 and "--workers" in refused.json()["detail"]
        assert "--workers" in http.get("/api/train").json()["disabled"]
