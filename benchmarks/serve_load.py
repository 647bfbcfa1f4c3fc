"""Load test of ``rsn2 serve`` with raw inputs of every task kind, against a dense control served the same way.

Usage::

    python -m benchmarks.serve_load [--requests 100000] [--concurrency 128] [--malformed 0.05]
                                    [--out docs/performance/serving.md] [--json docs/performance/serving.json]

The rsn2 side is one FC-A model trained by ``rsn2 train`` (one epoch: speed does not depend on the
weights) on four raw tasks from ``examples/own-tasks``: ``digit``
(PNG files, resized to 28 x 28: FC-A's own input), ``species`` (iris CSV rows), ``progression``
(diabetes CSV rows, a regression) and ``review`` (text); each keeps 10% of the trunk. The control is
the dense FC-A model of the digit task with the same stored preprocessing, served the same way.

Each side starts ``python -m rsn2 serve`` on a free loopback port and sends ``--requests`` requests of
one raw sample from ``--concurrency`` concurrent clients (httpx, asyncio): to the rsn2 server spread
over its four tasks (JSON bodies; every other iris row in Triton's binary tensor data extension), to
the control all as digit PNGs. A share ``--malformed`` of them is broken on purpose, cycling through:
wrong shape, broken JSON, NaN, unknown task, wrong datatype, a wrong input name, an image that is not
base64, base64 of bytes that are no image. The table gives the status codes (a 5xx is a failure; every
malformed request must get a 4xx), whether the server still answered ``/v2/health/live`` and a correct
request afterwards, the server's resident memory after the first 10% of the requests and after all
of them (``rss_growth``: their ratio, within 1.05 to pass), latency p50 and p99 of the well-formed
requests (and of the digit requests alone, the control's kind) and throughput. Both sides run one
after the other in one process on the same machine; compare their ratio, not absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks.tables import machine_line, markdown_table, publish_table
from benchmarks.training_precision import cpu_feature_line
from rsn2.devices import cpu_name
from rsn2.io import load_model, read_metadata, save_model
from rsn2.network.dense_control import dense_control
from rsn2.preprocessing import INPUTS_KEY
from rsn2.workflow import load_train_file, train_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "own-tasks"
MALFORMED_KINDS = ("shape", "json", "nan", "task", "datatype", "name", "base64", "image")
TASKS = ("digit", "species", "progression", "review")

Request = tuple[str, bytes, dict[str, str], str]
"""``(task, body, headers, kind)``: ``kind`` is ``"ok"`` or the way the request is broken."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_models(folder: Path) -> tuple[Path, Path]:
    """The rsn2 model of the four raw tasks and the dense control of its digit task, in ``folder``."""
    for name in ("iris.csv", "diabetes.csv", "reviews.jsonl"):
        shutil.copy(EXAMPLES / name, folder / name)
    shutil.copytree(EXAMPLES / "digits", folder / "digits")
    keep = 0.1
    config = {
        "network": {"kind": "fc-a"},
        "tasks": {
            "digit": {"kind": "classification", "data": {"images": "digits"}, "keep_fraction": keep},
            "species": {
                "kind": "classification",
                "data": {"csv": "iris.csv", "target": "species"},
                "keep_fraction": keep,
            },
            "progression": {
                "kind": "regression",
                "data": {"csv": "diabetes.csv", "target": "progression"},
                "keep_fraction": keep,
            },
            "review": {
                "kind": "classification",
                "data": {"jsonl": "reviews.jsonl", "text": "text", "label": "sentiment", "length": 32},
                "keep_fraction": keep,
            },
        },
        "training": {"max_epochs": 1, "batch_size": 64},
    }
    (folder / "train.yaml").write_text(yaml.safe_dump(config))
    model = folder / "rsn2.safetensors"
    train_file(load_train_file(folder / "train.yaml"), model)
    network = load_model(model)
    torch.manual_seed(0)
    control = dense_control(network.spec, "digit")  # untrained: serving speed does not depend on the weights
    stored = read_metadata(model)["user"][INPUTS_KEY]["digit"]
    control_path = folder / "control.safetensors"
    save_model(control, control_path, user={INPUTS_KEY: {"digit": stored}})
    return model, control_path


def _samples(folder: Path) -> dict[str, list[Any]]:
    """Raw samples per task: PNG bytes, iris rows, diabetes rows, texts."""

    def rows(name: str, target: str) -> list[list[float]]:
        lines = (folder / name).read_text().splitlines()
        header = lines[0].split(",")
        keep = [i for i, c in enumerate(header) if c != target]
        return [[float(line.split(",")[i]) for i in keep] for line in lines[1:]]

    return {
        "digit": [p.read_bytes() for p in sorted((folder / "digits").glob("*/*.png"))[:200]],
        "species": rows("iris.csv", "species"),
        "progression": rows("diabetes.csv", "progression"),
        "review": [json.loads(line)["text"] for line in (folder / "reviews.jsonl").read_text().splitlines()],
    }


def _json(inputs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def _binary_features(row: list[float]) -> tuple[bytes, dict[str, str]]:
    """One feature row in Triton's binary tensor data extension (what tritonclient sends by default)."""
    data = np.asarray([row], dtype="<f4").tobytes()
    tensor = {
        "name": "features",
        "shape": [1, len(row)],
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(data)},
    }
    head = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head))}


def _good(task: str, sample: Any, binary: bool) -> tuple[bytes, dict[str, str]]:
    if task == "digit":
        image = base64.b64encode(sample).decode()
        return _json([{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}]), {}
    if task == "review":
        return _json([{"name": "text", "shape": [1], "datatype": "BYTES", "data": [sample]}]), {}
    if binary:
        return _binary_features(sample)
    return _json([{"name": "features", "shape": [1, len(sample)], "datatype": "FP32", "data": sample}]), {}


def _broken(kind: str, samples: dict[str, list[Any]]) -> tuple[str, bytes]:
    row = samples["species"][0]
    features = {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": row}
    if kind == "shape":
        return "species", _json([{**features, "shape": [1, 3], "data": row[:3]}])
    if kind == "json":
        body = _json([features])
        return "species", body[: len(body) // 2]
    if kind == "nan":  # JSON has no NaN, but Python's parser reads one: the server must refuse it
        return "species", _json([{**features, "data": "DATA"}]).replace(b'"DATA"', b"[NaN, 1, 2, 3]")
    if kind == "task":
        return "no-such-task", _json([features])
    if kind == "datatype":
        return "review", _json([{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}])
    if kind == "name":
        return "species", _json([{**features, "name": "input"}])
    if kind == "base64":
        return "digit", _json([{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}])
    junk = base64.b64encode(b"\x89PNG but not an image").decode()
    return "digit", _json([{"name": "image", "shape": [1], "datatype": "BYTES", "data": [junk]}])


def requests_for(
    tasks: tuple[str, ...], samples: dict[str, list[Any]], n: int, malformed: float, seed: int
) -> list[Request]:
    """``n`` requests spread over ``tasks`` in turn; every ``1 / malformed``-th one broken."""
    rng = np.random.default_rng(seed)
    every = max(1, round(1 / malformed)) if malformed > 0 else 0
    out: list[Request] = []
    for i in range(n):
        if every and i % every == every - 1:
            kind = MALFORMED_KINDS[(i // every) % len(MALFORMED_KINDS)]
            task, body = _broken(kind, samples)
            if (
                task not in tasks and kind != "task"
            ):  # the control serves the digit task alone: the same body goes there
                task = tasks[0]
            out.append((task, body, {}, kind))
            continue
        task = tasks[i % len(tasks)]
        pool = samples[task]
        body, headers = _good(task, pool[int(rng.integers(len(pool)))], binary=task == "species" and i % 2 == 0)
        out.append((task, body, headers, "ok"))
    return out


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc")


async def _load(base: str, pid: int, requests: list[Request], concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: dict[str, list[float]] = {t: [] for t in TASKS}
    codes: dict[str, int] = {}
    malformed_not_4xx = 0
    done, first_mark = 0, max(1, len(requests) // 10)
    rss: dict[str, int] = {}
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal done, malformed_not_4xx
        while not queue.empty():
            task, body, headers, kind = queue.get_nowait()
            start = time.perf_counter()
            try:
                r = await http.post(f"{base}/v2/models/{task}/infer", content=body, headers=headers, timeout=120)
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            if kind == "ok" and code == "200":
                latencies[task].append(time.perf_counter() - start)
            if kind != "ok" and not code.startswith("4"):
                malformed_not_4xx += 1
            codes[code] = codes.get(code, 0) + 1
            done += 1
            if done == first_mark:
                rss["first"] = _rss_kb(pid)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers={"Content-Type": "application/json"}) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        rss["last"] = _rss_kb(pid)
        alive = (await http.get(f"{base}/v2/health/live")).status_code == 200
        task, body, headers, _ = next(r for r in requests if r[3] == "ok")
        answers = (await http.post(f"{base}/v2/models/{task}/infer", content=body, headers=headers)).status_code == 200
    every = np.array([v for values in latencies.values() for v in values]) * 1e3
    digits = np.array(latencies["digit"]) * 1e3
    return {
        "requests": len(requests),
        "malformed": sum(r[3] != "ok" for r in requests),
        "status_codes": dict(sorted(codes.items())),
        "5xx": sum(v for k, v in codes.items() if k.startswith("5")),
        "malformed_not_4xx": malformed_not_4xx,
        "alive_after": alive and answers,
        "rss_mb_at_10pct": rss["first"] / 1024,
        "rss_mb_after": rss["last"] / 1024,
        "rss_growth": rss["last"] / rss["first"],
        "p50_ms": float(np.percentile(every, 50)) if every.size else None,
        "p99_ms": float(np.percentile(every, 99)) if every.size else None,
        "digit_p50_ms": float(np.percentile(digits, 50)) if digits.size else None,
        "digit_p99_ms": float(np.percentile(digits, 99)) if digits.size else None,
        "requests_per_s": len(requests) / seconds,
        "seconds": seconds,
    }


def serve_and_load(model_path: Path, requests: list[Request], concurrency: int, max_batch: int) -> dict[str, Any]:
    port = _free_port()
    cmd = [sys.executable, "-m", "rsn2", "serve", str(model_path), "--port", str(port), "--max-batch", str(max_batch)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        return asyncio.run(_load(base, server.pid, requests, concurrency))
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_ready(base: str, server: subprocess.Popen[str]) -> None:
    import httpx

    deadline = time.monotonic() + 300  # a fresh install compiles the sparse kernels first
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read() if server.stderr else ''}")
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in 300 s")


def run(n: int, concurrency: int, malformed: float, max_batch: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model, control = build_models(Path(tmp))
        samples = _samples(Path(tmp))
        sides = {
            "rsn2: FC-A, 4 raw tasks (10% each)": (model, TASKS),
            "dense control: FC-A, digit": (control, ("digit",)),
        }
        for name, (path, tasks) in sides.items():
            requests = requests_for(tasks, samples, n, malformed, seed=1)
            rows.append({"served": name, **serve_and_load(path, requests, concurrency, max_batch)})
    return rows


TABLE_KEYS = [
    "served",
    "requests",
    "malformed",
    "status_codes",
    "5xx",
    "malformed_not_4xx",
    "alive_after",
    "rss_mb_at_10pct",
    "rss_mb_after",
    "rss_growth",
    "p50_ms",
    "p99_ms",
    "digit_p50_ms",
    "digit_p99_ms",
    "requests_per_s",
]


def passed(row: dict[str, Any]) -> bool:
    """The load test's targets: no 5xx, every malformed request a 4xx, still answering, memory within 5%."""
    return row["5xx"] == 0 and row["malformed_not_4xx"] == 0 and row["alive_after"] and row["rss_growth"] <= 1.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--malformed", type=float, default=0.05, help="share of broken requests (default 0.05)")
    parser.add_argument("--max-batch", type=int, default=64, help="the servers' --max-batch (default 64)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args(argv)
    rows = run(args.requests, args.concurrency, args.malformed, args.max_batch)
    base = rows[1]["requests_per_s"]
    for r in rows:
        r["throughput_vs_control"] = r["requests_per_s"] / base if base else None
        r["passed"] = passed(r)
    header = (
        machine_line() + f" with {torch.get_num_threads()} "
        f"threads; {args.concurrency} concurrent clients in the benchmark process, the server in another.  \n"
        + cpu_feature_line()
        + "\n\n"
    )
    table = header + markdown_table(rows, [*TABLE_KEYS, "throughput_vs_control", "passed"]) + "\n"
    publish_table(args.out, "benchmarks.serve_load", argv, table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "machine": cpu_name()}, indent=2))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
