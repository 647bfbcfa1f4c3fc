import pytest
import torch

from rsn2.continual.config import load_benchmark_config, parse_benchmark_config
from rsn2.errors import ConfigError

from .helpers_cl import tiny_config

GOOD = {
    "name": "b",
    "title": "t",
    "stream": {"kind": "permuted", "dataset": "mnist", "tasks": 3},
    "network": {"kind": "mlp", "hidden": [100, 100]},
    "keep_fraction": 0.1,
    "methods": {"rsn2": {}},
}


def test_every_shipped_benchmark_file_is_valid():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "cl").rglob("*.yaml"))
    assert files
    for path in files:
        config = load_benchmark_config(path)
        assert config.methods


@pytest.mark.parametrize(
    ("name", "shape", "width"),
    [("omniglot-rotation", (1, 32, 32), 1500), ("split-cifar10-resnet18", (3, 32, 32), 160)],
)
def test_the_module_benchmarks_build_their_networks(name, shape, width):
    """Their modules (benchmarks/cl/networks.py) import from the file's folder and convert."""
    from pathlib import Path

    from rsn2.continual.networks import BenchmarkNetwork

    config = load_benchmark_config(Path(__file__).resolve().parents[2] / "benchmarks" / "cl" / f"{name}.yaml")
    networks = BenchmarkNetwork.of(config, shape)
    assert networks.width == width
    from rsn2.continual.streams import ContinualTask

    task = ContinualTask(
        "t",
        torch.zeros(4, *shape),
        torch.zeros(4, dtype=torch.long),
        torch.zeros(2, *shape),
        torch.zeros(2, dtype=torch.long),
        ["a", "b"],
    )
    net = networks.new([networks.task_spec(task)])
    assert net.body is not None and len(list(net.multitask_layers())) > 4


def test_defaults_and_train_config():
    config = parse_benchmark_config(GOOD)
    assert config.network.options["hidden"] == (100, 100) and config.training.epochs == 5
    train = config.training.train_config(seed=7)
    assert train.max_epochs == train.patience == 5 and train.seed == 7 and train.min_delta == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stream": {"kind": "shuffled", "dataset": "mnist"}}, "stream.kind must be one of"),
        ({"stream": {"kind": "permuted", "dataset": "mnist"}}, "needs 'tasks'"),
        ({"stream": {"kind": "split", "dataset": "mnist"}}, "needs 'classes_per_task'"),
        ({"stream": {"kind": "permuted", "dataset": "imdb", "tasks": 2}}, "stream.dataset must be one of"),
        ({"network": {"kind": "conv-a"}}, "only a network reading flat vectors"),
        ({"network": {"module": "pkg.mod:net", "input_shape": [1, 28, 28]}}, "only a network reading flat vectors"),
        ({"network": {"module": "pkg.mod", "input_shape": [784]}}, "package.module:callable"),
        (
            {"network": {"module": "pkg.mod:net", "flatten": True}},
            "flatten is the old spelling: give network.input_shape",
        ),
        ({"network": {"module": "pkg.mod:net"}}, r"missing key\(s\) \['input_shape'\]"),
        (
            {"network": {"module": "pkg.mod:net", "input_shape": [784], "hidden": [4]}},
            r"network: unknown key\(s\) \['hidden'\]",
        ),
        ({"network": "mlp"}, r"write network: \{kind: mlp\} \(a bare name is the old spelling\)"),
        ({"network": {"kind": "resnet"}}, r"network.kind must be one of \['fc-a', 'conv-a', 'conv-b', 'mlp'\]"),
        ({"network": {"kind": "mlp", "module": "a:b"}}, "give exactly one of"),
        ({"network": {"layers": [{"kind": "relu"}], "input_shape": [4]}}, "layers networks are not taken here"),
        ({"network": {"kind": "conv-a", "hidden": [4]}}, r"unknown key\(s\) \['hidden'\]; allowed: \['kind'\]"),
        ({"network": {"kind": "mlp", "hidden": [100, 0]}}, "positive integers"),
        ({"keep_fraction": 1.5}, r"keep_fraction must be a number in \(0, 1\]"),
        ({"methods": {}}, "name at least one"),
        ({"methods": {"sgd": {}}}, "methods must be one of"),
        ({"methods": {"ewc": {"lambda": -1}}}, "lambda must be a number >= 0"),
        ({"methods": {"packnet": {"retrain_epochs": 0}}}, "retrain_epochs must be a positive integer"),
        ({"methods": {"rsn2": {"selection": {"allocation": "rows"}}}}, "allocation must be one of"),
        ({"methods": {"rsn2": {"selection": {"transfer": "all"}}}}, "the method names its transfer"),
        ({"methods": {"rsn2-select": {"keep_fraction": 1.5}}}, r"rsn2-select.keep_fraction must be a number"),
        ({"methods": {"packnet": {"keep_fraction": 0.5}}}, r"methods.packnet: unknown key"),
        ({"methods": {"packnet-disjoint": {"retrain_epochs": 0}}}, "packnet-disjoint.retrain_epochs must be"),
        ({"methods": {"stl": {"epochs": 3}}}, r"methods.stl: unknown key"),
        ({"training": {"batch_size": 0}}, "batch_size must be >= 1"),
        ({"training": {"optimizer": "lbfgs"}}, "training.optimizer must be one of"),
        ({"surprise": 1}, "unknown key"),
    ],
)
def test_bad_files_are_refused_naming_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_benchmark_config({**GOOD, **change})


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("name: b\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_benchmark_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_benchmark_config(tmp_path / "missing.yaml")


def test_to_dict_records_what_shapes_a_run():
    d = tiny_config().to_dict()
    assert set(d) == {"name", "title", "stream", "network", "keep_fraction", "training", "methods"}
    assert d["training"]["batch_size"] == 16
