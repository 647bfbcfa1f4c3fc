"""Every task of a model behind one HTTP server, on the Open Inference Protocol (v2) REST routes.

One task is one model name. Each task takes raw inputs and answers as ``rsn2 predict`` does: the
model file's preprocessing (:class:`~rsn2.preprocessing.Preprocessing`) runs on both sides. Routes:

- ``GET /v2/health/live``, ``GET /v2/health/ready``: the server is up / every task is loaded;
- ``GET /v2``: server name, version and extensions (``binary_tensor_data``);
- ``GET /v2/models/{task}``: the task's raw inputs (any one of them per request; a tabular task also
  takes one input per column, by name), its answers, its kind, class names and preprocessing;
- ``GET /v2/models/{task}/ready``;
- ``GET /v2/models/auto``, ``POST /v2/models/auto/infer`` (when no task is named ``auto``): the
  whole model without a task name. Each classification task whose preprocessing takes the request's
  inputs runs them; per sample the task whose output is least uncertain answers (normalized output
  entropy, :mod:`rsn2.inference.auto_task`): outputs ``task`` (BYTES; ``unknown`` below the
  confidence threshold), ``confidence`` (FP32), ``label`` (BYTES) and ``probability`` (FP32);
- ``POST /v2/models/{task}/infer``: for example ``{"inputs": [{"name": "features", "shape": [n, F],
  "datatype": "FP32", "data": [...]}]}`` answered by ``{"model_name": task, "outputs": [{"name":
  "probabilities", ...}, {"name": "label", "datatype": "BYTES", ...}]}`` (or ``value``). Bodies may
  use Triton's binary tensor data extension both ways (:mod:`rsn2.deploy.oip_codec`).

Requests to one task are batched dynamically (:class:`~rsn2.deploy.batching.DynamicBatcher`). A bad
request gets a 4xx answer ``{"error": "..."}`` saying what was wrong and what is allowed: 404 for an
unknown task, 413 for a body over the size limit, 400 for everything else (broken JSON or binary
data, a missing or extra input, a wrong shape or datatype, non-finite numbers, unreadable images,
token ids out of range, an unknown output).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rsn2.deploy.batching import DynamicBatcher
from rsn2.deploy.oip_codec import HEADER_LENGTH, NUMERIC, CodecError, InferRequest, decode_request, encode_response
from rsn2.errors import DataError, SpecError
from rsn2.inference import SparsePolicy, TaskModel, task_models
from rsn2.inference.auto_task import AUTO_OUTPUTS, answers_without_task
from rsn2.inference.values import check_value_dtype
from rsn2.network.model import MultitaskNetwork
from rsn2.network.task_inference import DEFAULT_THRESHOLD
from rsn2.preprocessing import Preprocessing, TabularInput
from rsn2.version import __version__

AUTO_MODEL = "auto"
"""The model name of the whole model without a task name (absent when a task has this name)."""

EXTENSIONS = ["binary_tensor_data"]
"""The protocol extensions this server declares (Triton's binary tensor data, both ways)."""


class ServeError(Exception):
    """A request rsn2 will not answer; ``status`` is the HTTP status (always 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class ServeSettings:
    """``max_batch`` samples and ``max_wait_ms`` per dynamic batch; ``max_body_bytes`` per request;
    ``dense_budget``: the dense kernel copies all tasks may hold together, in dense models' bytes
    (:func:`~rsn2.inference.task_models`; ``None``: no budget); ``compact_steps``: hold the packed
    linear shares with 4-bit column steps (:attr:`~rsn2.inference.SparsePolicy.compact_steps`: less
    memory, slower sparse kernels); ``values``: ``"float32"`` or ``"bfloat16"``, how every task holds its
    weights' values (:attr:`~rsn2.inference.SparsePolicy.values`); ``task_threshold``: the ``auto``
    model answers ``unknown`` below this confidence."""

    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_body_bytes: int = 8 * 1024 * 1024
    dense_budget: float | None = 1.0
    compact_steps: bool = False
    task_threshold: float = DEFAULT_THRESHOLD
    values: str = "float32"

    def __post_init__(self) -> None:
        check_value_dtype(self.values)
        if not 0.0 <= self.task_threshold <= 1.0:
            raise SpecError(f"task_threshold must be in [0, 1], got {self.task_threshold}")
        if self.max_batch < 1 or self.max_wait_ms < 0 or self.max_body_bytes < 1:
            raise SpecError(
                f"need max_batch >= 1, max_wait_ms >= 0 and max_body_bytes >= 1, got {self.max_batch}, "
                f"{self.max_wait_ms}, {self.max_body_bytes}"
            )
        if self.dense_budget is not None and self.dense_budget < 0:
            raise SpecError(f"dense_budget must be >= 0 or None, got {self.dense_budget}")


def create_app(
    network: MultitaskNetwork,
    settings: ServeSettings | None = None,
    preprocessing: dict[str, Preprocessing] | None = None,
) -> FastAPI:
    """A FastAPI app serving every task of ``network`` (each as a :class:`~rsn2.inference.TaskModel`,
    made by :func:`~rsn2.inference.task_models` within ``settings.dense_budget``, under the policy in
    force with ``settings.compact_steps`` and ``settings.values``). ``preprocessing``: each task's (see
    :func:`rsn2.preprocessing.preprocessing_of`; a task without one takes its input tensor as it is)."""
    settings = settings or ServeSettings()
    network.eval()
    tasks = [t for t in network.task_names if network.is_selected(t)]
    pre = {t: (preprocessing or {}).get(t) or Preprocessing.of(network.task_spec(t), None) for t in tasks}
    policy = SparsePolicy(compact_steps=settings.compact_steps, values=settings.values)
    models = task_models(network, policy, dense_budget=settings.dense_budget, preprocessing=pre)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsn2-infer")
    batchers: dict[str, DynamicBatcher] = {}
    state = {"ready": False}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for task, model in models.items():  # one call each first: compiles the sparse kernels before "ready"
            predict = _predictor(model)
            dtype = np.int64 if model.spec.takes_tokens else np.float32
            for n in (1, settings.max_batch):
                predict(np.zeros((n, *model.spec.input_shape), dtype=dtype))
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

    inferable = [t for t in tasks if pre[t].classes is not None] if AUTO_MODEL not in pre else []
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

    def preprocessing_of(task: str) -> Preprocessing:
        if task not in pre:
            raise ServeError(404, f"unknown model {task!r}; this server has {sorted(pre)}")
        return pre[task]

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        models = sorted(pre) + ([AUTO_MODEL] if inferable else [])
        return {"name": "rsn2", "version": __version__, "extensions": EXTENSIONS, "models": models}

    @app.get("/v2/models/{task}")
    async def model_metadata(task: str) -> dict[str, Any]:
        if task == AUTO_MODEL and inferable:
            return {
                "name": AUTO_MODEL,
                "versions": ["1"],
                "platform": "rsn2",
                "inputs": [f.to_dict() for t in inferable for f in pre[t].raw_inputs()],
                "outputs": [f.to_dict() for f in AUTO_OUTPUTS],
                "parameters": {
                    "tasks": inferable,
                    "rule": "per sample, the task whose output has the lowest normalized entropy",
                    "threshold": settings.task_threshold,
                },
            }
        p = preprocessing_of(task)
        described = p.describe()
        one_of = [f["name"] for f in described["inputs"]]
        if isinstance(p.input, TabularInput) and p.input.columns:
            one_of.append(f"one input per column {p.input.columns}")
        return {
            "name": task,
            "versions": ["1"],
            "platform": "rsn2",
            "inputs": described["inputs"],
            "outputs": described["outputs"],
            "parameters": {
                "kind": p.kind,
                "classes": list(p.classes) if p.classes is not None else None,
                "send_one_of": one_of,
                "preprocessing": described["preprocessing"],
            },
        }

    @app.get("/v2/models/{task}/ready")
    async def model_ready(task: str) -> Response:
        if not (task == AUTO_MODEL and inferable):
            preprocessing_of(task)
        return JSONResponse({"name": task, "ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.post("/v2/models/{task}/infer")
    async def infer(task: str, request: Request) -> Response:
        auto = task == AUTO_MODEL and bool(inferable)
        p = None if auto else preprocessing_of(task)
        body = await _read_body(request, settings.max_body_bytes)
        try:
            decoded = decode_request(body, request.headers.get(HEADER_LENGTH))
        except CodecError as exc:
            raise ServeError(exc.status, exc.message) from None
        if decoded.model_name not in (None, task):
            raise ServeError(400, f"the body names model {decoded.model_name!r}, the URL {task!r}")
        if p is None:
            wanted = _wanted_names([f.name for f in AUTO_OUTPUTS], decoded, AUTO_MODEL)
            answers = await infer_without_task(decoded)
        else:
            wanted = _wanted_names([f.name for f in p.raw_outputs()], decoded, task)
            answers = p.finish(await batchers[task].submit(await prepared(p, decoded)))
        head: dict[str, Any] = {"model_name": task, "model_version": "1"}
        if decoded.id is not None:
            head["id"] = decoded.id
        binary = {n for n in wanted if decoded.all_binary or n in decoded.binary_outputs}
        content, json_length = encode_response(head, {n: answers[n] for n in wanted}, binary)
        if json_length is None:
            return Response(content, media_type="application/json")
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(json_length)},
        )

    async def prepared(p: Preprocessing, decoded: InferRequest) -> np.ndarray:
        """The request's inputs as ``p``'s network input (ServeError 400 when it does not take them)."""
        named = _checked_inputs(p, decoded)
        try:
            if any(isinstance(v, list) for v in named.values()) and p.input.kind == "images":
                return await asyncio.to_thread(p.prepare_named, named)  # decoding images: off the event loop
            return p.prepare_named(named)
        except DataError as exc:
            raise ServeError(400, f"task {p.task!r}: {exc}") from None

    async def infer_without_task(decoded: InferRequest) -> dict[str, np.ndarray]:
        """Every inferable task that takes the request's inputs runs them; the answers of
        :func:`~rsn2.inference.auto_task.answers_without_task`. Tasks whose raw input is read alike
        (equal :attr:`Preprocessing.input`: images of one size, the same columns and ranges) share
        one decoding."""
        inputs: dict[str, np.ndarray] = {}
        refused: dict[str, str] = {}
        read: list[tuple[Any, np.ndarray]] = []  # (a task's input description, the request read by it)
        for t in inferable:
            same = next((x for how, x in read if how == pre[t].input), None)
            if same is not None:
                inputs[t] = same
                continue
            try:
                inputs[t] = await prepared(pre[t], decoded)
            except ServeError as exc:
                refused[t] = exc.message
                continue
            read.append((pre[t].input, inputs[t]))
        counts = {len(x) for x in inputs.values()}
        if not inputs or len(counts) != 1:
            why = "; ".join(f"{t}: {reason}" for t, reason in refused.items()) or "they read different sample counts"
            raise ServeError(400, f"no task of this model takes these inputs, so none can be inferred ({why})")
        outputs = await asyncio.gather(*(batchers[t].submit(x) for t, x in inputs.items()))
        return answers_without_task(dict(zip(inputs, outputs, strict=True)), pre, settings.task_threshold)

    return app


def serve(
    network: MultitaskNetwork,
    host: str,
    port: int,
    settings: ServeSettings | None = None,
    preprocessing: dict[str, Preprocessing] | None = None,
) -> None:
    """Run :func:`create_app` under uvicorn until interrupted. The app serves copies of the tasks'
    weights (its TaskModels), so the network itself is let go before serving starts: its kernels,
    owner maps and frozen snapshots would otherwise stay resident for the server's lifetime."""
    import uvicorn

    app = create_app(network, settings, preprocessing)
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


def _wanted_names(names: list[str], request: InferRequest, model: str) -> list[str]:
    """The outputs to answer: those the request names (each must be one of ``names``), else all of them."""
    if request.outputs is None:
        return names
    unknown = [n for n in request.outputs if n not in names]
    if unknown:
        raise ServeError(400, f"model {model!r} has no output(s) {unknown}; its outputs are {names}")
    return list(dict.fromkeys(request.outputs))


def _checked_inputs(p: Preprocessing, request: InferRequest) -> dict[str, Any]:
    """The request's inputs with their datatypes checked against the task's raw inputs (BYTES where it
    takes bytes or text, a number type elsewhere, exactly the tensor's type for a tensor input), and
    images sent as JSON strings decoded from base64."""
    fields = {f.name: f for f in p.raw_inputs()}
    named: dict[str, Any] = {}
    for name, value in request.inputs.items():
        datatype = request.datatypes[name]
        field = fields.get(name)
        if field is None:  # a column of a tabular task, or an unknown name the preprocessing refuses
            if datatype == "BYTES":
                raise ServeError(400, f"input {name!r}: a feature column takes numbers, got BYTES")
        elif field.datatype == "BYTES" and datatype != "BYTES":
            raise ServeError(400, f"input {name!r} of task {p.task!r} takes datatype 'BYTES', got {datatype!r}")
        elif field.datatype != "BYTES" and datatype not in NUMERIC:
            raise ServeError(
                400, f"input {name!r} of task {p.task!r} takes numbers ({field.datatype}), got {datatype!r}"
            )
        elif p.input.kind == "tensor" and datatype != field.datatype:
            raise ServeError(400, f"task {p.task!r} takes datatype {field.datatype!r}, got {datatype!r}")
        if name == "image" and name not in request.binary_inputs:
            value = [_base64(v, i) for i, v in enumerate(value)]
        named[name] = value
    return named


def _base64(text: bytes, index: int) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServeError(
            400, f"image {index}: in JSON an image is its file's bytes as a base64 string (or send binary data)"
        ) from None
