"""Load test of ``rsn2 serve``: a 5-task model against one dense control served the same way.

Usage::

    python -m benchmarks.serve_load [--requests 10000] [--concurrency 32] [--malformed 0.05]
                                    [--out docs/performance/serving.md] [--json docs/performance/serving.json]

Each side starts ``python -m rsn2 serve`` on a free loopback port and sends ``--requests`` single-sample
infer requests from ``--concurrency`` concurrent clients (httpx, asyncio): spread over all tasks of an
FC-A model with 5 tasks (10% kept each, RSN2 selection on random batches), or all to the one task of a
dense FC-A control. A share ``--malformed`` of them is broken on purpose (cycling through: wrong shape,
broken JSON, NaN, unknown task, wrong datatype). The table gives the status codes (a 5xx is a failure),
whether the server still answered ``/v2/health/live`` and a correct request afterwards, latency p50 and
p99 of the well-formed requests, and throughput. Both sides run one after the other in one process on
the same machine; compare their ratio, not absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.models import fc_a
from benchmarks.tables import machine_line, markdown_table, publish_table
from rsn2.devices import cpu_name
from rsn2.io import save_model
from rsn2.network.dense_control import dense_control

MALFORMED_KINDS = ("shape", "json", "nan", "task", "datatype")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bodies(tasks: list[str], n: int, malformed: float, seed: int) -> list[tuple[str, bytes, str]]:
    """``(task, body, kind)`` per request; ``kind`` is ``"ok"`` or the way it is broken."""
    rng = np.random.default_rng(seed)
    every = max(1, round(1 / malformed)) if malformed > 0 else 0
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        x = rng.random(784, dtype=np.float32)
        tensor: dict[str, Any] = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": x.tolist()}
        kind = MALFORMED_KINDS[(i // every) % len(MALFORMED_KINDS)] if every and i % every == every - 1 else "ok"
        if kind == "shape":
            tensor["shape"] = [1, 783]
        elif kind == "datatype":
            tensor["datatype"] = "FP16"
        elif kind == "task":
            task = "no-such-task"
        if kind == "nan":  # JSON has no NaN, but Python's parser reads one: the server must refuse it
            tensor["data"] = "DATA"
            numbers = "[NaN, " + ", ".join(map(str, x[1:].tolist())) + "]"
            body = json.dumps({"inputs": [tensor]}).replace('"DATA"', numbers).encode()
        else:
            body = json.dumps({"inputs": [tensor]}).encode()
        if kind == "json":
            body = body[: len(body) // 2]
        out.append((task, body, kind))
    return out


async def _load(base: str, requests: list[tuple[str, bytes, str]], concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    codes: dict[str, int] = {}
    queue: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            task, body, kind = queue.get_nowait()
            start = time.perf_counter()
            try:
                r = await http.post(f"{base}/v2/models/{task}/infer", content=body, timeout=60)
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            if kind == "ok" and code == "200":
                latencies.append(time.perf_counter() - start)
            codes[code] = codes.get(code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers={"Content-Type": "application/json"}) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        alive = (await http.get(f"{base}/v2/health/live")).status_code == 200
        task, body, _ = next(r for r in requests if r[2] == "ok")
        answers = (await http.post(f"{base}/v2/models/{task}/infer", content=body)).status_code == 200
    lat = np.array(latencies) * 1e3
    return {
        "requests": len(requests),
        "malformed": sum(r[2] != "ok" for r in requests),
        "status_codes": dict(sorted(codes.items())),
        "5xx": sum(v for k, v in codes.items() if k.startswith("5")),
        "alive_after": alive and answers,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "requests_per_s": len(requests) / seconds,
        "seconds": seconds,
    }


def serve_and_load(
    model_path: Path, tasks: list[str], n: int, concurrency: int, malformed: float, max_batch: int
) -> dict[str, Any]:
    port = _free_port()
    cmd = [sys.executable, "-m", "rsn2", "serve", str(model_path), "--port", str(port), "--max-batch", str(max_batch)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        return asyncio.run(_load(base, _bodies(tasks, n, malformed, seed=1), concurrency))
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_ready(base: str, server: subprocess.Popen[str]) -> None:
    import httpx

    for _ in range(600):
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read() if server.stderr else ''}")
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in 60 s")


def run(n: int, concurrency: int, malformed: float, max_batch: int) -> list[dict[str, Any]]:
    net = fc_a(5, 0.1)
    control = dense_control(net.spec, "task0")
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            "rsn2: FC-A, 5 tasks (10% each)": (net, net.task_names),
            "dense control: FC-A, 1 task": (control, ["task0"]),
        }
        for name, (model, tasks) in sides.items():
            path = Path(tmp) / "model.safetensors"
            save_model(model, path)
            rows.append({"served": name, **serve_and_load(path, tasks, n, concurrency, malformed, max_batch)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--malformed", type=float, default=0.05, help="share of broken requests (default 0.05)")
    parser.add_argument("--max-batch", type=int, default=64, help="the servers' --max-batch (default 64)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args(argv)
    rows = run(args.requests, args.concurrency, args.malformed, args.max_batch)
    keys = [
        "served",
        "requests",
        "malformed",
        "status_codes",
        "5xx",
        "alive_after",
        "p50_ms",
        "p99_ms",
        "requests_per_s",
    ]
    base = rows[1]["requests_per_s"]
    for r in rows:
        r["throughput_vs_control"] = r["requests_per_s"] / base if base else None
    header = (
        machine_line() + f" with {torch.get_num_threads()} "
        f"threads; {args.concurrency} concurrent clients in the benchmark process, the server in another.\n\n"
    )
    table = header + markdown_table(rows, [*keys, "throughput_vs_control"]) + "\n"
    publish_table(args.out, "benchmarks.serve_load", argv, table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "machine": cpu_name()}, indent=2))
    return 0 if all(r["5xx"] == 0 and r["alive_after"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
