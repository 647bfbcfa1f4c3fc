"""`rsn2 serve MODEL` as a user runs it: a real uvicorn process on loopback."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import torch

from rsn2.io import save_model
from rsn2.network import MultitaskNetwork
from rsn2.selection import select_subnetworks
from tests.cli.test_info_tasks import _spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serve_answers_over_http_and_survives_bad_requests(tmp_path):
    torch.manual_seed(0)
    net = MultitaskNetwork(_spec())
    select_subnetworks(net, net.task_names, method="random")
    model = tmp_path / "m.safetensors"
    save_model(net, model)
    port = _free_port()
    cmd = [sys.executable, "-m", "rsn2", "serve", str(model), "--port", str(port), "--max-wait-ms", "1"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a fresh install compiles the sparse kernels before it is ready
        while True:
            try:
                if _call(f"{base}/v2/health/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise AssertionError("the server did not become ready")
            time.sleep(0.1)
        x = torch.rand(2, 12)
        body = {"inputs": [{"name": "input", "shape": [2, 12], "datatype": "FP32", "data": x.ravel().tolist()}]}
        status, answer = _call(f"{base}/v2/models/colour/infer", body)
        with torch.no_grad():
            want = net(x, "colour")
        assert status == 200
        probabilities = next(o for o in answer["outputs"] if o["name"] == "probabilities")
        assert torch.allclose(torch.tensor(probabilities["data"]).view(2, 3), torch.softmax(want, 1), atol=1e-5)
        assert _call(f"{base}/v2/models/colour/infer", b"{broken")[0] == 400
        assert _call(f"{base}/v2/models/nope/infer", body)[0] == 404
        assert _call(f"{base}/v2/health/live") == (200, {"live": True})
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    assert "Uvicorn running" in output or "Application startup complete" in output


def test_serve_refuses_a_bad_dense_budget_before_loading(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "rsn2", "serve", str(tmp_path / "absent.safetensors"), "--dense-budget", "-1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "--dense-budget: expected a number >= 0 or 'none', got '-1'" in done.stderr
