"""Every task of a model behind one HTTP server, on the Open Inference Protocol (v2) REST routes.

One task is one model name. Routes:

- ``GET /v2/health/live``, ``GET /v2/health/ready``: the server is up / every task is loaded;
- ``GET /v2``: server name and version;
- ``GET /v2/models/{task}``: the task's input (name ``"input"``, datatype, shape ``[-1, *input_shape]``)
  and output (``"output"``, ``"FP32"``, ``[-1, outputs]``), its kind and class names;
- ``GET /v2/models/{task}/ready``;
- ``POST /v2/models/{task}/infer``: ``{"inputs": [{"name": "input", "shape": [n, ...], "datatype":
  "FP32", "data": [...]}]}`` (``data`` row-major, flat or nested) answered by ``{"model_name": task,
  "outputs": [{"name": "output", "shape": [n, outputs], "datatype": "FP32", "data": [...]}]}``.

Requests to one task are batched dynamically (:class:`~rsn2.deploy.batching.DynamicBatcher`). A bad
request gets a 4xx answer ``{"error": "..."}`` saying what was wrong and what is allowed: 404 for an
unknown task, 413 for a body over the size limit, 400 for everything else (broken JSON, a missing or
extra input, a wrong shape or datatype, non-finite numbers, token ids out of range).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rsn2.deploy.batching import DynamicBatcher
from rsn2.errors import SpecError
from rsn2.inference import TaskModel, get_policy, task_models
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import TaskSpec
from rsn2.version import __version__

DATATYPES = {"FP32": np.float32, "INT64": np.int64}
"""The input datatypes tasks take (float features, or token ids)."""


class ServeError(Exception):
    """A request rsn2 will not answer; ``status`` is the HTTP status (always 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class _InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    inputs: list[_Tensor]
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class ServeSettings:
    """``max_batch`` samples and ``max_wait_ms`` per dynamic batch; ``max_body_bytes`` per request;
    ``dense_budget``: the dense kernel copies all tasks may hold together, in dense models' bytes
    (:func:`~rsn2.inference.task_models`; ``None``: no budget); ``compact_steps``: hold the packed
    linear shares with 4-bit column steps (:attr:`~rsn2.inference.SparsePolicy.compact_steps`: less
    memory, slower sparse kernels)."""

    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_body_bytes: int = 8 * 1024 * 1024
    dense_budget: float | None = 1.0
    compact_steps: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_ms < 0 or self.max_body_bytes < 1:
            raise SpecError(
                f"need max_batch >= 1, max_wait_ms >= 0 and max_body_bytes >= 1, got {self.max_batch}, "
                f"{self.max_wait_ms}, {self.max_body_bytes}"
            )
        if self.dense_budget is not None and self.dense_budget < 0:
            raise SpecError(f"dense_budget must be >= 0 or None, got {self.dense_budget}")


def create_app(network: MultitaskNetwork, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving every task of ``network`` (each as a :class:`~rsn2.inference.TaskModel`,
    made by :func:`~rsn2.inference.task_models` within ``settings.dense_budget``, under the policy in
    force with ``settings.compact_steps``)."""
    settings = settings or ServeSettings()
    network.eval()
    specs = {t: network.task(t) for t in network.task_names if network.is_selected(t)}
    policy = replace(get_policy(), compact_steps=settings.compact_steps)
    models = task_models(network, policy, dense_budget=settings.dense_budget)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsn2-infer")
    batchers: dict[str, DynamicBatcher] = {}
    state = {"ready": False}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for task, model in models.items():  # one call each first: compiles the sparse kernels before "ready"
            predict = _predictor(model)
            for n in (1, settings.max_batch):
                predict(np.zeros((n, *specs[task].input_shape), dtype=DATATYPES[specs[task].input_dtype]))
            batchers[task] = DynamicBatcher(predict, executor, settings.max_batch, settings.max_wait_ms / 1e3)
            batchers[task].start()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            for b in batchers.values():
                await b.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="rsn2", version=__version__, lifespan=lifespan)
    app.state.batchers = batchers

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"bad request: {exc.errors()}"}, status_code=400)

    def spec_of(task: str) -> TaskSpec:
        if task not in specs:
            raise ServeError(404, f"unknown model {task!r}; this server has {sorted(specs)}")
        return specs[task]

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "rsn2", "version": __version__, "extensions": [], "models": sorted(specs)}

    @app.get("/v2/models/{task}")
    async def model_metadata(task: str) -> dict[str, Any]:
        spec = spec_of(task)
        return {
            "name": task,
            "versions": ["1"],
            "platform": "rsn2",
            "inputs": [{"name": "input", "datatype": spec.input_dtype, "shape": [-1, *spec.input_shape]}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, spec.outputs]}],
            "parameters": {"kind": spec.kind, "classes": list(spec.classes) if spec.classes else None},
        }

    @app.get("/v2/models/{task}/ready")
    async def model_ready(task: str) -> Response:
        spec_of(task)
        return JSONResponse({"name": task, "ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.post("/v2/models/{task}/infer")
    async def infer(task: str, request: Request) -> dict[str, Any]:
        spec = spec_of(task)
        body = await _read_body(request, settings.max_body_bytes)
        x, request_id = _parse_infer(body, spec)
        out = await batchers[task].submit(x)
        answer: dict[str, Any] = {
            "model_name": task,
            "model_version": "1",
            "outputs": [{"name": "output", "shape": list(out.shape), "datatype": "FP32", "data": out.ravel().tolist()}],
        }
        if request_id is not None:
            answer["id"] = request_id
        return answer

    return app


def serve(network: MultitaskNetwork, host: str, port: int, settings: ServeSettings | None = None) -> None:
    """Run :func:`create_app` under uvicorn until interrupted. The app serves copies of the tasks'
    weights (its TaskModels), so the network itself is let go before serving starts: its kernels,
    owner maps and frozen snapshots would otherwise stay resident for the server's lifetime."""
    import uvicorn

    app = create_app(network, settings)
    del network  # the caller's reference was handed over; ours is the last one
    uvicorn.run(app, host=host, port=port, log_level="info")


def _predictor(model: TaskModel) -> Any:
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).float().numpy()

    return predict


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServeError(413, f"request body of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServeError(413, f"request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_infer(body: bytes, spec: TaskSpec) -> tuple[np.ndarray, str | None]:
    """The input batch of a v2 infer request for ``spec``'s task, checked; raises :class:`ServeError`."""
    try:
        raw = json.loads(body, parse_constant=_refuse_constant)
    except ServeError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ServeError(400, f"the body is not valid JSON: {exc}") from None
    try:
        request = _InferRequest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise ServeError(400, f"not an inference request ({problems}); expected {_EXAMPLE}") from None
    if len(request.inputs) != 1 or request.inputs[0].name != "input":
        names = [t.name for t in request.inputs]
        raise ServeError(400, f"task {spec.name!r} takes exactly one input named 'input', got {names}")
    tensor = request.inputs[0]
    expected_tail = list(spec.input_shape)
    shape_text = f"[n, {', '.join(map(str, expected_tail))}]"
    if len(tensor.shape) != len(expected_tail) + 1 or tensor.shape[1:] != expected_tail or tensor.shape[0] < 1:
        raise ServeError(400, f"task {spec.name!r} takes input of shape {shape_text} with n >= 1, got {tensor.shape}")
    if tensor.datatype != spec.input_dtype:
        raise ServeError(400, f"task {spec.name!r} takes datatype {spec.input_dtype!r}, got {tensor.datatype!r}")
    dtype = DATATYPES[spec.input_dtype]
    try:
        flat = np.asarray(tensor.data, dtype=np.float64).ravel()
    except (ValueError, TypeError):
        raise ServeError(400, "input data must be numbers (a flat or nested list)") from None
    if flat.size != math.prod(tensor.shape):
        raise ServeError(
            400, f"input data holds {flat.size} numbers, shape {tensor.shape} needs {math.prod(tensor.shape)}"
        )
    if not np.isfinite(flat).all():
        raise ServeError(400, "input data holds NaN or infinite numbers")
    if dtype is np.int64:
        vocabulary = int(spec.adapter[0].params["num_embeddings"])
        if (flat != np.round(flat)).any() or flat.min(initial=0) < 0 or flat.max(initial=0) >= vocabulary:
            raise ServeError(400, f"token ids must be integers in [0, {vocabulary}) for task {spec.name!r}")
    elif np.abs(flat).max(initial=0.0) > np.finfo(np.float32).max:
        raise ServeError(400, "input data holds numbers too large for FP32")
    return flat.astype(dtype).reshape(tensor.shape), request.id


def _refuse_constant(name: str) -> Any:
    raise ServeError(400, f"input data holds {name}, which is not a finite number")


_EXAMPLE = '{"inputs": [{"name": "input", "shape": [n, ...], "datatype": "FP32", "data": [...]}]}'
