"""`rsn2 serve`: Open Inference Protocol v2 routes for every task, dynamic batching, 4xx for bad requests."""

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from rsn2.deploy.batching import DynamicBatcher
from rsn2.deploy.server import ServeSettings, create_app
from rsn2.errors import SpecError, TaskError
from rsn2.inference import TaskModel
from rsn2.inference.auto_task import UNKNOWN, answers_without_task
from rsn2.network import MultitaskNetwork
from rsn2.network.task_inference import DEFAULT_THRESHOLD
from rsn2.preprocessing import Preprocessing
from rsn2.selection import select_subnetworks
from tests.cli.test_info_tasks import _spec


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    net = MultitaskNetwork(_spec())  # colour (3 named classes), price (regression), review (token ids)
    select_subnetworks(net, net.task_names, method="random")
    return net.eval()


@pytest.fixture(scope="module")
def client(network):
    with TestClient(create_app(network, ServeSettings(max_batch=8, max_wait_ms=2, max_body_bytes=20_000))) as c:
        yield c


def _request(x, datatype="FP32"):
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}]}


def outputs_of(body):
    """The answer's outputs by name, as arrays of their shapes (BYTES as object arrays of strings)."""
    return {
        o["name"]: np.array(o["data"], dtype=object if o["datatype"] == "BYTES" else np.float64).reshape(o["shape"])
        for o in body["outputs"]
    }


def expected(network, x, task):
    """What a tensor-input task answers: softmax probabilities and class names, or the values."""
    with torch.no_grad():
        out = network(x, task)
    spec = network.task_spec(task)
    if spec.kind == "regression":
        return {"value": out.numpy()}
    probabilities = torch.softmax(out, dim=1).numpy()
    classes = list(spec.classes) if spec.classes else [str(i) for i in range(out.shape[1])]
    return {"probabilities": probabilities, "label": np.array(classes, dtype=object)[probabilities.argmax(1)]}


def assert_answers(got, want):
    assert set(got) == set(want)
    for name, value in want.items():
        if value.dtype == object:
            assert got[name].tolist() == value.tolist()
        else:
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5)


def test_health_and_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["models"] == ["colour", "price", "review", "auto"] and server["extensions"] == ["binary_tensor_data"]
    meta = client.get("/v2/models/colour").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 12]}]
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["parameters"]["kind"] == "classification"
    assert meta["parameters"]["classes"] == ["red", "green", "blue"]
    assert meta["parameters"]["preprocessing"] == {"input": "tensor"}
    assert client.get("/v2/models/review").json()["inputs"][0]["datatype"] == "INT64"
    assert client.get("/v2/models/price").json()["outputs"] == [{"name": "value", "datatype": "FP32", "shape": [-1, 1]}]
    assert client.get("/v2/models/price/ready").json() == {"name": "price", "ready": True}


@pytest.mark.parametrize("task", ["colour", "price"])
def test_infer_answers_what_the_network_computes(client, network, task):
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(1))
    r = client.post(f"/v2/models/{task}/infer", json={**_request(x.numpy()), "id": "req-1"})
    assert r.status_code == 200
    body = r.json()
    assert body["model_name"] == task and body["id"] == "req-1"
    assert_answers(outputs_of(body), expected(network, x, task))


def test_only_the_outputs_asked_for_are_answered(client, network):
    x = torch.rand(3, 12, generator=torch.Generator().manual_seed(4))
    r = client.post("/v2/models/colour/infer", json={**_request(x.numpy()), "outputs": [{"name": "label"}]})
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]
    assert outputs_of(r.json())["label"].tolist() == expected(network, x, "colour")["label"].tolist()
    r = client.post("/v2/models/colour/infer", json={**_request(x.numpy()), "outputs": [{"name": "logits"}]})
    assert r.status_code == 400 and "no output(s) ['logits']" in r.json()["error"]


def test_token_task_and_nested_data(client, network):
    x = torch.randint(0, 50, (4, 3), generator=torch.Generator().manual_seed(2))
    nested = {"inputs": [{"name": "input", "shape": [4, 3], "datatype": "INT64", "data": x.tolist()}]}
    got = outputs_of(client.post("/v2/models/review/infer", json=nested).json())
    assert_answers(got, expected(network, x, "review"))


def test_the_auto_model_infers_each_samples_task_among_those_that_take_its_input(client, network):
    meta = client.get("/v2/models/auto").json()
    assert meta["parameters"]["tasks"] == ["colour", "review"]  # price is a regression task
    assert [o["name"] for o in meta["outputs"]] == ["task", "confidence", "label", "probability"]
    assert client.get("/v2/models/auto/ready").json() == {"name": "auto", "ready": True}
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(5))
    got = outputs_of(client.post("/v2/models/auto/infer", json=_request(x.numpy())).json())
    want = expected(network, x, "colour")  # the only classification task taking 12 floats: sure of its task
    assert got["task"].tolist() == ["colour"] * 4 and got["confidence"].tolist() == [1.0] * 4
    assert got["label"].tolist() == want["label"].tolist()
    np.testing.assert_allclose(got["probability"], want["probabilities"].max(1), rtol=1e-5)
    tokens = torch.randint(0, 50, (2, 3), generator=torch.Generator().manual_seed(6))
    body = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "INT64", "data": tokens.ravel().tolist()}]}
    assert outputs_of(client.post("/v2/models/auto/infer", json=body).json())["task"].tolist() == ["review"] * 2
    r = client.post("/v2/models/auto/infer", json={**_request(x.numpy()), "outputs": [{"name": "task"}]})
    assert [o["name"] for o in r.json()["outputs"]] == ["task"]
    r = client.post("/v2/models/auto/infer", json=_request(np.zeros((1, 5), dtype=np.float32)))
    assert r.status_code == 400 and "no task of this model takes these inputs" in r.json()["error"]
    assert "colour:" in r.json()["error"] and "review:" in r.json()["error"]


def test_answers_without_task_pick_the_surest_task_per_sample_and_say_unknown_below_the_threshold(network):
    pre = {t: Preprocessing.of(network.task_spec(t), None) for t in ("colour", "review")}
    outputs = {
        "colour": np.array([[9.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0]], dtype=np.float32),
        "review": np.array([[0.1, 0.0], [0.0, 9.0], [0.1, 0.0]], dtype=np.float32),
    }
    answers = answers_without_task(outputs, pre)
    assert answers["task"].tolist() == ["colour", "review", UNKNOWN]
    assert answers["label"].tolist() == ["red", "1", ""] and answers["probability"][2] == 0.0
    assert answers["confidence"][0] > DEFAULT_THRESHOLD > answers["confidence"][2]
    assert answers_without_task(outputs, pre, threshold=0.0)["task"][2] in ("colour", "review")
    with pytest.raises(TaskError, match="regression task"):
        answers_without_task(
            {"price": np.zeros((1, 1), dtype=np.float32)}, {"price": Preprocessing.of(network.task_spec("price"), None)}
        )


GOOD = {"inputs": [{"name": "input", "shape": [1, 12], "datatype": "FP32", "data": [0.5] * 12}]}


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        ("/v2/models/nope/infer", GOOD, 404, "unknown model 'nope'"),
        ("/v2/models/colour/infer", b"{not json", 400, "not valid JSON"),
        ("/v2/models/colour/infer", b"[1, 2]", 400, "not an inference request"),
        ("/v2/models/colour/infer", {"inputs": []}, 400, r"takes 'input' FP32 \[n, 12\].*got input\(s\) \[\]"),
        ("/v2/models/colour/infer", {"inputs": [{**GOOD["inputs"][0], "name": "x"}]}, 400, r"got input\(s\) \['x'\]"),
        ("/v2/models/colour/infer", {"inputs": [{**GOOD["inputs"][0], "shape": [1, 13]}]}, 400, "holds 12 numbers"),
        (
            "/v2/models/colour/infer",
            {"inputs": [{**GOOD["inputs"][0], "shape": [2, 6]}]},
            400,
            r"\[n, 12\] \(n >= 1.*got shape \[2, 6\]",
        ),
        ("/v2/models/colour/infer", {"inputs": [{**GOOD["inputs"][0], "shape": [0, 12], "data": []}]}, 400, "n >= 1"),
        (
            "/v2/models/colour/infer",
            {"inputs": [{**GOOD["inputs"][0], "datatype": "FP64"}]},
            400,
            "takes datatype 'FP32'",
        ),
        ("/v2/models/colour/infer", {"inputs": [{**GOOD["inputs"][0], "data": [0.5] * 11}]}, 400, "holds 11 numbers"),
        ("/v2/models/colour/infer", {"inputs": [{**GOOD["inputs"][0], "data": ["a"] * 12}]}, 400, "must be numbers"),
        (
            "/v2/models/colour/infer",
            b'{"inputs": [{"name": "input", "shape": [1, 12], "datatype": "FP32", '
            b'"data": [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}',
            400,
            "NaN",
        ),
        (
            "/v2/models/colour/infer",
            {"inputs": [{**GOOD["inputs"][0], "data": [1e39] * 12}]},
            400,
            "outside the range of FP32",
        ),
        (
            "/v2/models/review/infer",
            {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 50]}]},
            400,
            r"in \[0, 50\)",
        ),
        ("/v2/models/colour/infer", {**GOOD, "extra": 1}, 400, "not an inference request"),
        (
            "/v2/models/colour/infer",
            {"inputs": [{**GOOD["inputs"][0], "data": [0.123456] * 3000, "shape": [250, 12]}]},
            413,
            "over the limit of 20,000 bytes",
        ),
    ],
)
def test_bad_requests_get_a_4xx_json_error_and_the_server_stays_up(client, path, body, status, message):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = client.post(path, **kwargs)
    assert r.status_code == status, r.text[:300]
    assert set(r.json()) == {"error"}
    assert re.search(message, r.json()["error"]), r.json()["error"]
    assert client.post("/v2/models/colour/infer", json=GOOD).status_code == 200


def test_unknown_routes_and_methods_are_4xx_json(client):
    r = client.get("/v2/models/nope")
    assert r.status_code == 404 and "unknown model" in r.json()["error"]
    assert client.get("/nowhere").status_code == 404
    assert client.get("/v2/models/colour/infer").status_code == 405


def test_concurrent_requests_to_one_task_are_batched(network):
    app = create_app(network, ServeSettings(max_batch=16, max_wait_ms=50))
    with TestClient(app) as c:
        x = np.random.default_rng(0).random((1, 12), dtype=np.float32)
        results = []

        def call():
            results.append(c.post("/v2/models/colour/infer", json=_request(x)).status_code)

        threads = [threading.Thread(target=call) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = app.state.batchers["colour"].stats
    assert results == [200] * 12
    assert stats.requests == 12 and stats.calls < 12 and stats.largest_batch > 1


def test_batcher_splits_outputs_back_to_their_requests_and_respects_max_batch():
    calls = []

    def predict(x):
        calls.append(len(x))
        time.sleep(0.01)
        return x[:, :1] * 2

    async def scenario():
        batcher = DynamicBatcher(predict, ThreadPoolExecutor(1), max_batch=5, max_wait=0.05)
        batcher.start()
        sizes = [1, 2, 3, 1, 6, 2]
        inputs = [np.full((n, 2), float(i)) for i, n in enumerate(sizes)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.stop()
        return inputs, outs, batcher.stats

    inputs, outs, stats = asyncio.run(scenario())
    for x, out in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(out, x[:, :1] * 2)
    assert all(n <= 5 for n in calls if n != 6) and 6 in calls  # the 6-sample request ran alone
    assert stats.requests == 6 and stats.samples == 15 and stats.calls == len(calls) < 6


def test_a_failing_model_call_fails_its_requests_only():
    def predict(x):
        if (x < 0).any():
            raise ValueError("negative")
        return x

    async def scenario():
        batcher = DynamicBatcher(predict, ThreadPoolExecutor(1), max_batch=1, max_wait=0.0)
        batcher.start()
        bad = batcher.submit(np.array([[-1.0]]))
        good = batcher.submit(np.array([[1.0]]))
        results = await asyncio.gather(bad, good, return_exceptions=True)
        await batcher.stop()
        return results

    bad, good = asyncio.run(scenario())
    assert isinstance(bad, ValueError) and good.tolist() == [[1.0]]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch >= 1"):
        ServeSettings(max_batch=0)
    assert json.loads(json.dumps(ServeSettings().__dict__))["max_batch"] == 64


def test_serving_lets_the_network_go(monkeypatch):
    """The app serves copies of the tasks' weights, so the network is not kept resident while serving
    (as ``rsn2 serve`` calls it: the loaded network handed straight to ``serve``)."""
    import gc
    import weakref

    import uvicorn

    from rsn2.deploy import server

    refs = []

    def loaded_network():
        torch.manual_seed(0)
        net = MultitaskNetwork(_spec())
        select_subnetworks(net, net.task_names, method="random")
        refs.append(weakref.ref(net))
        return net

    served = []

    def fake_run(app, **kwargs):
        gc.collect()
        served.append(refs[0]() is None)
        with TestClient(app) as c:  # the app answers without the network
            assert c.get("/v2/health/ready").status_code == 200

    monkeypatch.setattr(uvicorn, "run", fake_run)
    server.serve(loaded_network(), "127.0.0.1", 0)
    assert served == [True]


def test_a_zero_dense_budget_serves_the_same_answers(network):
    settings = ServeSettings(max_batch=8, max_wait_ms=2, dense_budget=0)
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(1))
    with TestClient(create_app(network, settings)) as c:
        r = c.post("/v2/models/colour/infer", json=_request(x.numpy()))
    assert r.status_code == 200
    assert_answers(outputs_of(r.json()), expected(network, x, "colour"))
    with pytest.raises(SpecError, match="dense_budget must be >= 0"):
        ServeSettings(dense_budget=-0.5)


def test_compact_steps_reach_the_task_models_and_serve_the_same_answers(network, monkeypatch):
    from rsn2.deploy import server

    policies = []
    original = server.task_models

    def spy(net, policy=None, **kwargs):
        policies.append(policy)
        return original(net, policy, **kwargs)

    monkeypatch.setattr(server, "task_models", spy)
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(2))
    with TestClient(create_app(network, ServeSettings(max_batch=8, max_wait_ms=2, compact_steps=True))) as c:
        r = c.post("/v2/models/colour/infer", json=_request(x.numpy()))
    assert [p.compact_steps for p in policies] == [True]
    assert r.status_code == 200
    assert_answers(outputs_of(r.json()), expected(network, x, "colour"))


def test_the_serve_command_passes_compact_steps_on(tmp_path, monkeypatch):
    from rsn2.cli.main import main
    from rsn2.deploy import server
    from rsn2.io import save_model

    torch.manual_seed(0)
    net = MultitaskNetwork(_spec())
    select_subnetworks(net, net.task_names, method="random")
    save_model(net, tmp_path / "m.safetensors")
    seen = []
    monkeypatch.setattr(server, "serve", lambda network, host, port, settings, preprocessing: seen.append(settings))
    for flags, compact in (([], False), (["--compact-steps"], True)):
        assert main(["serve", str(tmp_path / "m.safetensors"), *flags]) == 0
        assert seen[-1].compact_steps is compact
    for flags, values in (([], "float32"), (["--values", "bfloat16"], "bfloat16")):
        assert main(["serve", str(tmp_path / "m.safetensors"), *flags]) == 0
        assert seen[-1].values == values
    with pytest.raises(SystemExit):  # argparse names the choices
        main(["serve", str(tmp_path / "m.safetensors"), "--values", "int8"])


def test_bfloat16_values_serve_the_rounded_task_models_answers(network):
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(2))
    half = TaskModel.from_network(network, "colour", values="bfloat16")
    assert {k.values for k in half.kernels()} == {"bfloat16"}
    with TestClient(create_app(network, ServeSettings(max_batch=8, max_wait_ms=2, values="bfloat16"))) as c:
        r = c.post("/v2/models/colour/infer", json=_request(x.numpy()))
    assert r.status_code == 200
    got = outputs_of(r.json())
    want = torch.softmax(half(x), dim=1).numpy()
    np.testing.assert_allclose(np.asarray(got["probabilities"]).reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(SpecError, match="packed values must be one of float32, bfloat16"):
        ServeSettings(values="float16")


def _binary_body(tensors, blobs, parameters=None):
    head = json.dumps({"inputs": tensors, **({"parameters": parameters} if parameters else {})}).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def test_binary_tensor_data_in_and_out(client, network):
    x = np.random.default_rng(3).random((2, 12), dtype=np.float32)
    tensor = {"name": "input", "shape": [2, 12], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
    body, headers = _binary_body([tensor], [x.astype("<f4").tobytes()], {"binary_data_output": True})
    r = client.post("/v2/models/colour/infer", content=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    json_length = int(r.headers["inference-header-content-length"])
    head, blob = json.loads(r.content[:json_length]), r.content[json_length:]
    (probabilities, label) = head["outputs"]
    assert "data" not in probabilities and probabilities["parameters"]["binary_data_size"] == 2 * 3 * 4
    assert label["datatype"] == "BYTES" and label["shape"] == [2]
    got = np.frombuffer(blob[: 2 * 3 * 4], dtype="<f4").reshape(2, 3)
    want = expected(network, torch.from_numpy(x), "colour")
    np.testing.assert_allclose(got, want["probabilities"], rtol=1e-5, atol=1e-6)
    labels, at = [], 2 * 3 * 4
    while at < len(blob):  # BYTES: a 4-byte little-endian length, then the bytes
        n = int.from_bytes(blob[at : at + 4], "little")
        labels.append(blob[at + 4 : at + 4 + n].decode())
        at += 4 + n
    assert labels == want["label"].tolist()


@pytest.mark.parametrize(
    "size,blob,header,message",
    [
        (48, b"\0" * 40, None, "runs past the body's binary data"),
        (48, b"\0" * 52, None, "4 bytes of binary data no input claims"),
        (44, b"\0" * 44, None, "44 bytes of binary data, shape \\[1, 12\\] of FP32 needs 48"),
        (48, b"\0" * 48, "99999", "must be the JSON header's length"),
        (48, b"\0" * 48, "abc", "must be the JSON header's length"),
    ],
)
def test_malformed_binary_data_gets_a_400(client, size, blob, header, message):
    tensor = {"name": "input", "shape": [1, 12], "datatype": "FP32", "parameters": {"binary_data_size": size}}
    body, headers = _binary_body([tensor], [blob])
    if header is not None:
        headers["Inference-Header-Content-Length"] = header
    r = client.post("/v2/models/colour/infer", content=body, headers=headers)
    assert r.status_code == 400 and re.search(message, r.json()["error"]), r.text


def test_a_truncated_bytes_element_gets_a_400():
    from rsn2.deploy.oip_codec import CodecError, decode_request

    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}
    head = json.dumps({"inputs": [tensor]}).encode()
    with pytest.raises(CodecError, match="BYTES element 0 runs past its data"):
        decode_request(head + (10).to_bytes(4, "little") + b"ab", str(len(head)))
    request = decode_request(head + (2).to_bytes(4, "little") + b"ab", str(len(head)))
    assert request.inputs["text"] == [b"ab"] and request.binary_inputs == {"text"}


def test_the_body_may_name_its_model_as_kserve_does(client):
    assert client.post("/v2/models/colour/infer", json={**GOOD, "model_name": "colour"}).status_code == 200
    r = client.post("/v2/models/colour/infer", json={**GOOD, "model_name": "price"})
    assert r.status_code == 400 and "names model 'price', the URL 'colour'" in r.json()["error"]


def test_the_auto_model_reads_a_request_once_for_tasks_that_read_it_alike(monkeypatch):
    from rsn2.network import NetworkSpec, TaskSpec, linear, relu
    from rsn2.preprocessing import inputs as preprocessing_inputs

    torch.manual_seed(0)
    heads = {"a": 3, "b": 4}
    tasks = [TaskSpec(t, "classification", (6,), head=(linear(8, n),), keep_fraction=0.4) for t, n in heads.items()]
    net = MultitaskNetwork(NetworkSpec((linear(6, 8), relu()), tasks))
    select_subnetworks(net, net.task_names, method="random")
    reads = []
    plain = preprocessing_inputs.TensorInput.prepare_named

    def counted(self, named):
        reads.append(self)
        return plain(self, named)

    monkeypatch.setattr(preprocessing_inputs.TensorInput, "prepare_named", counted)
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(1))
    with TestClient(create_app(net.eval(), ServeSettings(max_batch=8, max_wait_ms=2))) as c:
        got = outputs_of(c.post("/v2/models/auto/infer", json=_request(x.numpy())).json())
    assert len(reads) == 1  # two tasks, one input description: one read
    assert set(got["task"].tolist()) <= {"a", "b", UNKNOWN} and len(got["task"]) == 3
