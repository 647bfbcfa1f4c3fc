"""A real ``rsn2 serve`` process for tests: a free loopback port, JSON calls, start-until-ready and stop."""

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, body: dict | bytes | None = None) -> tuple[int, dict]:
    """``(status, JSON answer)`` of a GET (no body) or POST to ``url``."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextlib.contextmanager
def running_server(model: Path, *flags: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``rsn2 serve MODEL`` on a free loopback port, as a user runs it, until ready; yields its base
    URL and the process (its output merged on a text pipe) and stops it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "rsn2", "serve", str(model), "--port", str(port), *flags]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a fresh install compiles the sparse kernels before it is ready
        while True:
            try:
                if call(f"{base}/v2/health/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise AssertionError(f"the server did not become ready: {server.communicate(timeout=5)[0][-2000:]}")
            time.sleep(0.1)
        yield base, server
    finally:
        if server.poll() is None:
            server.terminate()
            server.communicate(timeout=20)
