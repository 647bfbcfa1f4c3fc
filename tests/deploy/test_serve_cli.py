"""`rsn2 serve MODEL` as a user runs it: a real uvicorn process on loopback."""

import subprocess
import sys

import torch

from rsn2.io import save_model
from rsn2.network import MultitaskNetwork
from rsn2.selection import select_subnetworks
from tests.cli.test_info_tasks import _spec
from tests.deploy.server_process import call, running_server


def test_serve_answers_over_http_and_survives_bad_requests(tmp_path):
    torch.manual_seed(0)
    net = MultitaskNetwork(_spec())
    select_subnetworks(net, net.task_names, method="random")
    model = tmp_path / "m.safetensors"
    save_model(net, model)
    with running_server(model, "--max-wait-ms", "1") as (base, server):
        x = torch.rand(2, 12)
        body = {"inputs": [{"name": "input", "shape": [2, 12], "datatype": "FP32", "data": x.ravel().tolist()}]}
        status, answer = call(f"{base}/v2/models/colour/infer", body)
        with torch.no_grad():
            want = net(x, "colour")
        assert status == 200
        probabilities = next(o for o in answer["outputs"] if o["name"] == "probabilities")
        assert torch.allclose(torch.tensor(probabilities["data"]).view(2, 3), torch.softmax(want, 1), atol=1e-5)
        assert call(f"{base}/v2/models/colour/infer", b"{broken")[0] == 400
        assert call(f"{base}/v2/models/nope/infer", body)[0] == 404
        assert call(f"{base}/v2/health/live") == (200, {"live": True})
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
