from pathlib import Path

import pytest
import torch

from benchmarks.subnetwork_signal import main
from rsn2.errors import SpecError
from rsn2.network import MultitaskNetwork
from rsn2.selection import SelectionConfig, select_subnetworks, subnetwork_signal
from rsn2.training import TrainConfig, fit_stage, selection_samples
from tests.helpers import mlp_spec, random_data

EXP1 = Path(__file__).resolve().parents[2] / "experiments" / "exp1.yaml"


def _selected(keep: float = 0.3) -> tuple[MultitaskNetwork, torch.Tensor]:
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=keep))
    samples = {t: (random_data(net, t).x, random_data(net, t).y) for t in net.task_names}
    select_subnetworks(net, net.task_names, samples)
    return net, samples["t0"][0]


def test_signal_reports_every_relu_on_the_path_in_order_and_restores_the_mode():
    net, x = _selected()
    net.train()
    report = subnetwork_signal(net, "t0", x)
    assert [s.key for s in report.layers] == ["trunk.1", "trunk.3", "trunk.5"]
    assert net.training
    for s in report.layers:
        assert 0.0 <= s.dead_units <= 1.0 and 0.0 < s.active < 1.0 and s.std > 0
    with torch.no_grad():
        assert report.output_std == pytest.approx(float(net.eval()(x, "t0").std()))


def test_signal_sees_a_dead_first_layer_and_a_live_one():
    net, x = _selected()  # x is uniform in [0, 1): positive inputs
    first = net.trunk[0]
    assert all(not b.any() for b in first.biases.values())  # biases start at zero
    with torch.no_grad():
        first.weight.abs_().neg_()  # every weight negative on positive inputs: nothing passes the ReLU
    dead = subnetwork_signal(net, "t0", x)
    assert dead.layers[0].active == 0.0 and dead.layers[0].dead_units == 1.0 and dead.layers[0].std == 0.0
    with torch.no_grad():
        first.weight.abs_()
    live = subnetwork_signal(net, "t0", x)
    assert live.layers[0].active > 0.5 and live.layers[0].dead_units < 1.0
    assert dead.positive_weights["trunk.0"] == 0.0 and live.positive_weights["trunk.0"] == 1.0
    assert set(live.positive_weights) == {"trunk.0", "trunk.2", "trunk.4", "heads.t0.0"}  # every multitask layer


def test_signal_counts_units_that_keep_no_input():
    from rsn2.network import NetworkSpec, TaskSpec, linear, relu

    class FirstRows:
        name = "first-rows"

        def __call__(self, network, tasks, samples, slots):
            score = torch.zeros(4, 4)
            score[:2] = 1.0  # the task's half of the layer is rows 0 and 1 whole: units 2 and 3 keep nothing
            return dict.fromkeys(slots, score)

    torch.manual_seed(0)
    spec = NetworkSpec(
        (linear(4, 4), relu()), (TaskSpec("a", "classification", (4,), [linear(4, 2)], keep_fraction=0.5),)
    )
    net = MultitaskNetwork(spec)
    select_subnetworks(net, ["a"], method=FirstRows())
    report = subnetwork_signal(net, "a", torch.rand(8, 4))
    assert report.empty_units == {"trunk.0": 0.5, "heads.a.0": 0.0}


def test_signal_needs_two_samples():
    net, x = _selected()
    with pytest.raises(ValueError, match="at least 2 samples"):
        subnetwork_signal(net, "t0", x[:1])


def test_selection_samples_are_the_batches_fit_stage_selects_with():
    config = TrainConfig(batch_size=16, max_epochs=1, progress=False)
    torch.manual_seed(0)
    trained = MultitaskNetwork(mlp_spec(n_tasks=2))
    data = {t: random_data(trained, t, n=80, seed=i) for i, t in enumerate(trained.task_names)}
    fit_stage(trained, data, config)
    torch.manual_seed(0)
    selected = MultitaskNetwork(mlp_spec(n_tasks=2))
    samples = selection_samples(data, config)
    assert all(len(x) == 16 for x, _ in samples.values())
    select_subnetworks(selected, list(data), samples)
    for (key, a), (_, b) in zip(trained.multitask_layers(), selected.multitask_layers(), strict=True):
        for name in a.subnetworks:
            assert torch.equal(a.mask(name), b.mask(name)), (key, name)


def test_selection_sample_size_sets_how_many_samples_fit_stage_scores_on():
    config = TrainConfig(batch_size=16, max_epochs=1, progress=False)
    torch.manual_seed(0)
    trained = MultitaskNetwork(mlp_spec(n_tasks=1))
    data = {"t0": random_data(trained, "t0", n=80)}
    fit_stage(trained, data, config, selection=SelectionConfig(sample_size=48))
    torch.manual_seed(0)
    selected = MultitaskNetwork(mlp_spec(n_tasks=1))
    samples = selection_samples(data, config, 48)
    assert len(samples["t0"][0]) == 48
    select_subnetworks(selected, ["t0"], samples)
    torch.manual_seed(0)
    one_batch = MultitaskNetwork(mlp_spec(n_tasks=1))
    select_subnetworks(one_batch, ["t0"], selection_samples(data, config))
    (_, a), (_, b), (_, c) = (next(iter(n.multitask_layers())) for n in (trained, selected, one_batch))
    assert torch.equal(a.mask("t0"), b.mask("t0"))
    assert not torch.equal(a.mask("t0"), c.mask("t0"))  # 48 samples rank positions otherwise than 16
    assert SelectionConfig(sample_size=48).to_dict()["sample_size"] == 48
    assert "sample_size" not in SelectionConfig().to_dict()  # run identities of earlier runs stay valid
    with pytest.raises(SpecError, match="sample_size must be a positive integer"):
        SelectionConfig(sample_size=0)


def test_signal_benchmark_refuses_a_missing_experiment_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml"), "--data-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.real_data
def test_signal_benchmark_shows_the_last_of_five_subnetworks_starting_silent(shared_data, tmp_path):
    out = tmp_path / "signal.md"
    # the earlier procedure (no reinit): rsn2's defaults re-initialise kept weights, see the next test
    args = [str(EXP1), "--data-dir", str(shared_data), "--smoke", "--selection", "reinit=false", "--out", str(out)]
    assert main(args) == 0
    text = out.read_text()
    assert text.startswith(f"Command: `python -m benchmarks.subnetwork_signal {' '.join(args)}`")
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| f")}
    assert list(rows) == ["f0", "f1", "f2", "f3", "f4"]
    output_std = {t: float(row.rstrip(" |").split(" | ")[-3]) for t, row in rows.items()}
    positive = {t: float(row.rstrip(" |").split(" | ")[-2].rstrip("%")) for t, row in rows.items()}
    # the first subnetwork takes the high-gradient positions; the last one gets what is left: in the first
    # conv (non-negative pixels) that is mostly negative weights, so its filters start dead
    assert output_std["f4"] < output_std["f0"] / 100
    assert positive["f4"] < 25 < positive["f0"]


@pytest.mark.real_data
def test_reinit_gives_the_last_subnetwork_as_much_signal_as_the_first(shared_data, tmp_path):
    out = tmp_path / "signal.md"
    assert (
        main([str(EXP1), "--data-dir", str(shared_data), "--smoke", "--selection", "reinit=true", "--out", str(out)])
        == 0
    )
    text = out.read_text()
    assert "selection options reinit=True" in text
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| f")}
    output_std = {t: float(row.rstrip(" |").split(" | ")[-3]) for t, row in rows.items()}
    positive = {t: float(row.rstrip(" |").split(" | ")[-2].rstrip("%")) for t, row in rows.items()}
    assert output_std["f4"] > output_std["f0"] / 3
    assert 30 < positive["f4"] < 70


def test_signal_benchmark_refuses_unknown_selection_overrides(tmp_path, capsys):
    assert main([str(EXP1), "--data-dir", str(tmp_path), "--selection", "greed=0"]) == 2
    assert "--selection takes KEY=VALUE with KEY one of" in capsys.readouterr().err
