"""Real Open Inference Protocol clients against a real ``rsn2 serve`` socket, with their defaults:
Triton's ``tritonclient.http`` (binary tensor data both ways unless told otherwise) and KServe's v2
REST client (``kserve.InferenceRESTClient``)."""

import asyncio

import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from rsn2 import TaskModel
from tests.deploy.test_same_answers import TEXTS, assert_same

IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]], dtype=np.float32)
DIABETES = np.array([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]], dtype=np.float32)


def _raw(raw_model):
    """Each task's raw inputs: (input name, datatype, NumPy array as a client sends it, Python samples)."""
    digits = [sorted((raw_model.folder / "digits" / c).iterdir())[0].read_bytes() for c in ("1", "4")]
    return {
        "species": ("features", "FP32", IRIS, IRIS.astype(np.float64)),
        "progression": ("features", "FP32", DIABETES, DIABETES.astype(np.float64)),
        "digit": ("image", "BYTES", np.array(digits, dtype=object), digits),
        "review": ("text", "BYTES", np.array([t.encode() for t in TEXTS], dtype=object), TEXTS),
    }


def _decoded(value: np.ndarray) -> np.ndarray:
    if value.dtype == object:
        return np.array([v.decode() if isinstance(v, bytes) else v for v in value.ravel()], dtype=object)
    return value


@pytest.fixture(scope="module")
def triton_client(served):
    client = triton.InferenceServerClient(served.removeprefix("http://"))
    yield client
    client.close()


def test_triton_client_reads_health_and_metadata(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    meta = triton_client.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"]
    assert triton_client.is_model_ready("species")
    model = triton_client.get_model_metadata("species")
    assert model["inputs"][0]["name"] == "features" and [o["name"] for o in model["outputs"]] == [
        "probabilities",
        "label",
    ]


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("task", ["species", "progression", "digit", "review"])
def test_triton_client_infers_raw_inputs(triton_client, raw_model, task, binary):
    """``binary=True``: the client's defaults (binary data in, binary outputs asked for); ``False``: JSON
    both ways (BYTES images then travel as strings: base64)."""
    name, datatype, array, python = _raw(raw_model)[task]
    inp = triton.InferInput(name, list(array.shape), datatype)
    if not binary and task == "digit":
        import base64

        array = np.array([base64.b64encode(b) for b in array], dtype=object)
    if binary:
        inp.set_data_from_numpy(array)
        result = triton_client.infer(task, [inp])
    else:
        inp.set_data_from_numpy(array, binary_data=False)
        outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in _output_names(task)]
        result = triton_client.infer(task, [inp], outputs=outputs)
    want = TaskModel.load(raw_model.path, task).predict(python)
    assert_same({k: _decoded(result.as_numpy(k)) for k in want}, want, f"tritonclient binary={binary}")


def _output_names(task):
    return ["value"] if task == "progression" else ["probabilities", "label"]


def test_triton_client_gets_a_clear_error_for_a_bad_input(triton_client):
    inp = triton.InferInput("features", [1, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(triton.InferenceServerException, match=r"takes 'features' FP32 \[n, 4\]"):
        triton_client.infer("species", [inp])


@pytest.mark.parametrize("binary", [True, False])
def test_kserve_rest_client_infers_raw_inputs(served, raw_model, binary):
    async def run() -> dict:
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            assert await client.is_server_ready(served) and await client.is_model_ready(served, "species")
            answers = {}
            for task, (name, datatype, array, _) in _raw(raw_model).items():
                if task == "digit" and not binary:
                    continue  # a JSON body carries image bytes as base64 strings: see the triton test
                inp = InferInput(name, list(array.shape), datatype)
                inp.set_data_from_numpy(array, binary_data=binary)
                response = await client.infer(served, InferRequest(task, [inp]), model_name=task)
                answers[task] = {o.name: _decoded(o.as_numpy()) for o in response.outputs}
            return answers
        finally:
            await client.close()

    for task, got in asyncio.run(run()).items():
        python = _raw(raw_model)[task][3]
        assert_same(got, TaskModel.load(raw_model.path, task).predict(python), f"kserve {task} binary={binary}")
