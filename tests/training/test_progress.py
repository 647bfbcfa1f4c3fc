"""Progress on long work: bars on a terminal, log lines elsewhere, on stderr (stdout stays clean)."""

import pytest
import torch

from rsn2.cli.main import main
from rsn2.errors import SpecError
from rsn2.network import MultitaskNetwork
from rsn2.training import TrainConfig, fit_stage
from tests.helpers import mlp_spec, random_data


def test_lines_mode_logs_each_epoch_on_stderr_only(capsys):
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=1))
    fit_stage(
        net, {"t0": random_data(net, "t0")}, TrainConfig(batch_size=16, max_epochs=3, patience=5, progress="lines")
    )
    out, err = capsys.readouterr()
    assert out == ""
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2", "epoch 3"]
    assert "t0: loss" in lines[0] and "it/s" not in err  # no progress bar


def test_progress_setting_and_threads_option_are_checked(capsys):
    with pytest.raises(SpecError, match="progress must be true, false or 'lines'"):
        TrainConfig(progress="bars")
    assert main(["--threads", "0", "info", "x.safetensors"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
