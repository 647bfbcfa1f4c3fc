from pathlib import Path

import pytest
import torch
import yaml

from rsn2.errors import ConfigError
from rsn2.experiments import build_spec, load_config, parse_config
from rsn2.network import MultitaskNetwork
from rsn2.selection import select_subnetworks

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("exp*.yaml"))


ABLATIONS = sorted((Path(__file__).resolve().parents[2] / "experiments" / "ablations").rglob("*.yaml"))


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_ablation_files_load_and_name_themselves(path):
    config = load_config(path)
    assert config.name == path.stem and config.paper
    MultitaskNetwork(build_spec(config))


def test_carveout_ablation_is_exp3_under_the_earlier_settings_without_rescaling():
    exp3 = load_config(EXPERIMENTS[2])
    carve = load_config(EXPERIMENTS[0].parent / "ablations" / "exp3-carveout.yaml")
    defaults = {"method": "gradient", "rescale": True, "allocation": "global", "reinit": True}
    assert exp3.selection_config().to_dict() == defaults  # rsn2's defaults
    assert carve.selection_config().to_dict() == {**defaults, "rescale": False, "reinit": False}
    assert carve.train_config().rescale_lr is False and exp3.train_config().rescale_lr is None
    assert (carve.tasks, carve.stages, carve.paper) == (exp3.tasks, exp3.stages, exp3.paper)


def test_rescale_lr_ablation_is_exp2_under_the_earlier_settings_with_rescale_lr():
    exp2 = load_config(EXPERIMENTS[1])
    ablation = load_config(EXPERIMENTS[0].parent / "ablations" / "exp2-rescale-lr.yaml")
    assert ablation.training == {"rescale_lr": True, "precision": "fp32", "early_stopping": "stage"}
    assert ablation.train_config().rescale_lr is True and ablation.selection_config().reinit is False
    assert (ablation.tasks, ablation.stages, ablation.paper) == (exp2.tasks, exp2.stages, exp2.paper)


def test_eight_experiment_files():
    assert [p.stem for p in EXPERIMENTS] == [f"exp{i}" for i in range(1, 9)]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_loads_and_builds(path):
    config = load_config(path)
    assert config.name == path.stem and config.paper
    net = MultitaskNetwork(build_spec(config))
    assert net.task_names == [t.name for t in config.tasks]
    if config.architecture == "fc-a":  # selection for the stages fits: capacity checks pass
        for stage in config.stages:
            select_subnetworks(net, list(stage), method="random")
        for task in net.task_names:
            x = torch.zeros(
                (2, *net.task_spec(task).input_shape), dtype=torch.long if net.task_spec(task).takes_tokens else None
            )
            assert net(x, task).shape[0] == 2


def test_exp8_shares_the_conv_layers_only():
    net = MultitaskNetwork(build_spec(load_config(EXPERIMENTS[7])))
    select_subnetworks(net, net.task_names, method="random")
    conv_layers = [layer for k, layer in net.multitask_layers() if k.startswith("trunk") and layer.weight.dim() == 4]
    dense_layers = [layer for k, layer in net.multitask_layers() if k.startswith("trunk") and layer.weight.dim() == 2]
    assert all(layer.subnetworks == ["utkface", "cifar"] for layer in conv_layers)
    assert all(layer.subnetworks == ["age", "gender", "race", "cifar"] for layer in dense_layers)


def _base():
    return yaml.safe_load(EXPERIMENTS[2].read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(optimiser="adam"), r"unknown key\(s\) \['optimiser'\]"),
        (lambda d: d.update(network={"kind": "resnet"}), r"network.kind must be one of \['fc-a', 'conv-a', 'conv-b'"),
        (
            lambda d: d.update(architecture="conv-a"),
            r"architecture: is the old spelling; write network: \{kind: conv-a\}",
        ),
        (lambda d: d.pop("network"), r"missing key\(s\) \['network'\]"),
        (lambda d: d["tasks"]["mnist"].update(keep_fraction=1.5), r"tasks\.mnist\.keep_fraction must be"),
        (lambda d: d["tasks"]["mnist"].update(dataset="svhn"), r"tasks\.mnist\.dataset must be one of"),
        (lambda d: d.update(stages=[["mnist"]]), "every task exactly once"),
        (lambda d: d.update(stages=[["mnist", "cats"]]), r"unknown task\(s\) \['cats'\]"),
        (lambda d: d.update(training={"optimizer": "lbfgs"}), r"training\.optimizer must be one of"),
        (lambda d: d.update(training={"rescale_lr": "yes"}), r"training: rescale_lr must be true or false"),
        (lambda d: d.update(training={"precision": "fp16"}), r"training: precision must be one of"),
        (lambda d: d.update(training={"memory_format": "nhwc"}), r"training: memory_format must be one of"),
        (lambda d: d.update(selection={"allocation": "fair"}), r"selection\.allocation must be one of"),
        (lambda d: d.update(selection={"rescale": "row"}), r"selection\.rescale must be true, false or one of"),
        (lambda d: d.update(selection={"reinit": 1}), r"selection\.reinit must be true or false"),
        (lambda d: d.update(selection={"method": "psychic"}), r"selection\.method must be one of"),
        (lambda d: d.update(paper={"dogs": {"multitask": 1}}), r"paper\.dogs: not a task"),
        (lambda d: d.pop("title"), r"missing key\(s\) \['title'\]"),
    ],
)
def test_bad_files_name_the_key_and_what_is_allowed(change, message):
    data = _base()
    change(data)
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_unsupported_dataset_on_architecture():
    data = _base()
    data["tasks"]["mnist"]["dataset"] = "utkface-age"
    with pytest.raises(ConfigError, match="not supported on fc-a"):
        build_spec(parse_config(data))


def test_order_ablation_differs_from_exp2_only_in_selection_order():
    exp2 = load_config(EXPERIMENTS[1])
    ablation = load_config(EXPERIMENTS[0].parent / "ablations" / "exp2-order.yaml")
    assert exp2.stages == (("easy", "hard"),) and ablation.stages == (("hard", "easy"),)
    assert (ablation.tasks, ablation.paper, ablation.selection, ablation.training) == (
        exp2.tasks,
        exp2.paper,
        exp2.selection,
        exp2.training,
    )


@pytest.mark.parametrize("path", [p for p in ABLATIONS if p.parent.name == "table"], ids=lambda p: p.stem)
def test_ablation_table_files_name_every_option_and_keep_their_experiment(path):
    """The table's runs mean the same whatever rsn2's defaults become: every option is named, and
    everything else is the experiment's own file."""
    raw = yaml.safe_load(path.read_text())
    assert set(raw["selection"]) == {"method", "rescale", "allocation", "reinit"}
    assert {"rescale_lr", "early_stopping", "precision", "memory_format"} <= set(raw["training"])
    base = yaml.safe_load((EXPERIMENTS[0].parent / f"{path.stem.split('-')[0]}.yaml").read_text())
    own = ("name", "title", "selection", "training")
    assert {k: v for k, v in raw.items() if k not in own} == {k: v for k, v in base.items() if k not in own}
    assert base.get("training", {}).items() <= raw["training"].items()  # the experiment's own settings kept
