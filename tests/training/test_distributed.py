"""Data-parallel training: 2 processes on the gloo backend, CPU, a small two-stage model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import rsn2.training.loop as loop
from rsn2.errors import DistributedError
from rsn2.io import load_model, save_model
from rsn2.network import MultitaskNetwork, multitask
from rsn2.selection import SelectionConfig
from rsn2.training import TaskData, TrainConfig, fit_stage, predict
from rsn2.training.distributed import Ranks, shard, state_digest
from tests.helpers import conv_spec, mlp_spec, random_data
from tests.user_models import MODELS, inputs_for, tasks_for

WORLD = 2
# fp32 so that the comparison with one process measures the data-parallel arithmetic alone
CONFIG = TrainConfig(batch_size=30, max_epochs=3, patience=5, min_delta=0.0, progress=False, precision="fp32")


class Interrupted(Exception):
    pass


def _setup(seed: int = 0) -> tuple[MultitaskNetwork, dict[str, TaskData]]:
    torch.manual_seed(seed)
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.4, width=32))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(301, 8, generator=gen)  # 30 for validation, 271 to train on
    return net, {"t0": TaskData(x, (x[:, 0] > 0.5).long()), "t1": TaskData(x, (x[:, 1] + x[:, 2] > 1.0).long())}


def _conv_setup() -> tuple[MultitaskNetwork, dict[str, TaskData]]:
    """A conv network (trained in channels_last by default), its second task entering through an adapter."""
    torch.manual_seed(0)
    net = MultitaskNetwork(conv_spec(keep=0.3))
    data = {t: random_data(net, t, n=120, seed=i) for i, t in enumerate(net.task_names)}
    return net, {"t0": data["img"], "t1": data["rgb"]}


def _resnet_setup() -> tuple[MultitaskNetwork, dict[str, TaskData]]:
    """A user's residual network with batch norms, converted: each rank's running statistics differ
    until they are averaged."""
    torch.manual_seed(0)
    net = multitask(MODELS["resnet"][0](), tasks_for("resnet", ("t0", "t1"), keep=0.4))
    return net, {t: TaskData(*inputs_for("resnet", n=120, seed=i)) for i, t in enumerate(("t0", "t1"))}


def _train(
    net: MultitaskNetwork,
    data: dict[str, TaskData],
    out: Path,
    name: str,
    checkpoint: Path | None,
    transfer: str = "none",
) -> None:
    """Stage 1 trains t0; stage 2 trains t1 (with ``checkpoint``, selected with ``transfer``); writes the
    model and t0's outputs. Task names are the conv network's (img, rgb) when ``data`` holds those."""
    first, second = ("img", "rgb") if "img" in net.task_names else ("t0", "t1")
    fit_stage(net, {first: data["t0"]}, CONFIG)
    before = predict(net, first, data["t0"].x)
    fit_stage(net, {second: data["t1"]}, CONFIG, checkpoint=checkpoint, selection=SelectionConfig(transfer=transfer))
    after = predict(net, first, data["t0"].x)
    save_model(net, out / f"{name}.safetensors")
    (out / f"{name}.json").write_text(json.dumps({"t0_unchanged": bool(torch.equal(before, after))}))


def _worker(rank: int, init_file: str, out_dir: str, mode: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    out = Path(out_dir)
    try:
        if mode == "diverge":  # each rank initialises from another seed: selection must refuse to go on
            net, data = _setup(seed=rank)
            try:
                fit_stage(net, {"t0": data["t0"]}, CONFIG)
            except DistributedError as exc:
                (out / f"diverge-rank{rank}.txt").write_text(str(exc))
            return
        net, data = {"conv": _conv_setup, "resnet": _resnet_setup}.get(mode, _setup)()
        checkpoint = out / "stage2.epochs.safetensors"
        seen: dict[str, int] = {}
        real_step = loop.train_step

        def counting_step(network, batches, *args, **kwargs):
            for t, (_, y) in batches.items():
                seen[t] = seen.get(t, 0) + len(y)
            return real_step(network, batches, *args, **kwargs)

        loop.train_step = counting_step  # type: ignore[assignment]
        if mode == "interrupted":  # every rank stops when epoch 2 of stage 2 starts
            starts = {"n": 0}

            class Stopping(loop._BatchOrder):
                def __init__(self, *args, **kwargs):
                    starts["n"] += 1
                    if starts["n"] > 3 + 1:  # stage 1's 3 epochs and stage 2's first (one task each)
                        raise Interrupted
                    super().__init__(*args, **kwargs)

            loop._BatchOrder = Stopping  # type: ignore[misc]
            try:
                _train(net, data, out, f"interrupted-rank{rank}", checkpoint)
            except Interrupted:
                return
        transfer = "select" if mode == "transfer" else "none"
        saved = checkpoint if mode in ("resumed", "checkpointed") else None
        _train(net, data, out, f"{mode}-rank{rank}", saved, transfer)
        (out / f"{mode}-rank{rank}-seen.json").write_text(json.dumps(seen))
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path: Path, mode: str) -> None:
    init_file = tmp_path / f"init-{mode}"
    mp.spawn(_worker, args=(str(init_file), str(tmp_path), mode), nprocs=WORLD, join=True)


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    _spawn(out, "plain")
    return out


def test_shard_weights_make_the_global_batch_mean():
    idx = torch.arange(11)
    parts = [shard(idx, Ranks(r, 3)) for r in range(3)]
    assert torch.equal(torch.cat([p for p, _ in parts]), idx)
    assert sum(w for _, w in parts) / 3 == pytest.approx(1.0)
    assert [len(p) for p, _ in parts] == [4, 4, 3]


@pytest.mark.slow
def test_each_rank_trains_on_its_half_of_every_global_batch(distributed_run):
    # 271 training samples a task: 9 global batches of 30 (15 per rank) and one of 1 sample, which rank 0
    # takes while rank 1's part is empty (it adds a zero loss); 3 epochs
    expected = {0: 3 * (9 * 15 + 1), 1: 3 * (9 * 15)}
    for r in range(WORLD):
        seen = json.loads((distributed_run / f"plain-rank{r}-seen.json").read_text())
        assert seen == {"t0": expected[r], "t1": expected[r]}


@pytest.mark.slow
def test_ranks_end_identical_and_earlier_tasks_bit_identical(distributed_run):
    models = [load_model(distributed_run / f"plain-rank{r}.safetensors") for r in range(WORLD)]
    assert state_digest(models[0]) == state_digest(models[1])  # weights and owner maps, bit for bit
    for r in range(WORLD):
        assert json.loads((distributed_run / f"plain-rank{r}.json").read_text()) == {"t0_unchanged": True}


@pytest.mark.slow
def test_data_parallel_matches_one_process_on_the_same_global_batch(distributed_run, tmp_path):
    net, data = _setup()
    _train(net, data, tmp_path, "single", None)
    ddp = load_model(distributed_run / "plain-rank0.safetensors")
    single = load_model(tmp_path / "single.safetensors")
    for (key, a), (_, b) in zip(ddp.multitask_layers(), single.multitask_layers(), strict=True):
        assert torch.equal(a.owner, b.owner), key  # the same selection
        # gradients summed in another order: equal to float rounding, 6 epochs of Adam apart
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=1e-4), key
    x = data["t0"].x
    torch.testing.assert_close(predict(ddp, "t0", x), predict(single, "t0", x), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_checkpoint_written_under_two_processes_resumes_under_two_processes(tmp_path):
    _spawn(tmp_path, "interrupted")
    assert (tmp_path / "stage2.epochs.safetensors").is_file()  # rank 0 wrote it; the stage stopped in epoch 2
    assert not (tmp_path / "interrupted-rank0.safetensors").exists()
    _spawn(tmp_path, "resumed")
    reference = tmp_path / "reference"
    reference.mkdir()
    _spawn(reference, "checkpointed")
    resumed = [load_model(tmp_path / f"resumed-rank{r}.safetensors") for r in range(WORLD)]
    uninterrupted = load_model(reference / "checkpointed-rank0.safetensors")
    assert state_digest(resumed[0]) == state_digest(resumed[1]) == state_digest(uninterrupted)


@pytest.mark.slow
def test_conv_network_in_channels_last_trains_identically_on_both_ranks(tmp_path):
    _spawn(tmp_path, "conv")
    models = [load_model(tmp_path / f"conv-rank{r}.safetensors") for r in range(WORLD)]
    assert state_digest(models[0]) == state_digest(models[1])
    assert json.loads((tmp_path / "conv-rank0.json").read_text()) == {"t0_unchanged": True}


@pytest.mark.slow
def test_a_converted_network_with_batch_norm_trains_identically_on_both_ranks(tmp_path):
    _spawn(tmp_path, "resnet")
    models = [load_model(tmp_path / f"resnet-rank{r}.safetensors", body=MODELS["resnet"][0]()) for r in range(WORLD)]
    assert state_digest(models[0]) == state_digest(models[1])  # weights and every batch norm's statistics
    assert json.loads((tmp_path / "resnet-rank0.json").read_text()) == {"t0_unchanged": True}


@pytest.mark.slow
def test_forward_transfer_selects_the_same_read_sets_on_both_ranks(tmp_path):
    _spawn(tmp_path, "transfer")
    models = [load_model(tmp_path / f"transfer-rank{r}.safetensors") for r in range(WORLD)]
    assert state_digest(models[0]) == state_digest(models[1])  # read sets are buffers: covered
    assert models[0].read_fraction("t1") > 0
    assert json.loads((tmp_path / "transfer-rank0.json").read_text()) == {"t0_unchanged": True}


@pytest.mark.slow
def test_ranks_that_select_differently_are_refused(tmp_path):
    _spawn(tmp_path, "diverge")
    for r in range(WORLD):
        message = (tmp_path / f"diverge-rank{r}.txt").read_text()
        assert "after selecting ['t0']: rank(s) [1] hold other weights or owner maps than rank 0" in message


def test_outside_torchrun_nothing_is_initialised(monkeypatch):
    from rsn2.training import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env(torch.device("cpu")) is None
    assert distributed.active() is None and distributed.is_writer()
    assert os.environ.get("WORLD_SIZE") is None


@pytest.mark.real_data
@pytest.mark.slow
def test_rsn2_run_under_torchrun_writes_one_result_from_rank_0(shared_data, tmp_path):
    import shutil
    import subprocess
    import sys

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        torchrun = Path(shutil.which("torchrun") or "torchrun")
    exp = Path(__file__).resolve().parents[2] / "experiments" / "exp3.yaml"
    out = tmp_path / "run"
    args = [str(torchrun), "--nproc_per_node", "2", "-m", "rsn2", "run", str(exp), "--out", str(out)]
    args += ["--smoke", "--data-dir", str(shared_data), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2
    assert results["command"].startswith("torchrun --nproc_per_node 2 -m rsn2 run ")
    assert not (out / "checkpoints").exists()
