import math

import pytest
import torch

from rsn2 import ownership_problems
from rsn2.continual import methods
from rsn2.continual.config import BenchmarkConfig
from rsn2.continual.dense_baselines import EWCPenalty, trunk_parameters
from rsn2.continual.methods import TrainedMagnitude, own_all_free, run_method
from rsn2.continual.networks import BenchmarkNetwork
from rsn2.errors import CapacityError
from rsn2.selection import SelectionConfig, select_subnetworks
from rsn2.training import evaluate

from .helpers_cl import tiny_config, tiny_stream


def _final_rows_equal_diagonal(r):
    """Each earlier task's accuracy is the same in every later row (no forgetting)."""
    return all(r[i][j] == r[j][j] for j in range(len(r)) for i in range(j, len(r)))


@pytest.mark.parametrize("method", ["rsn2", "rsn2-select", "rsn2-all", "packnet", "packnet-disjoint", "stl"])
def test_isolating_methods_never_change_an_earlier_task(method):
    run = run_method(method, tiny_config(), tiny_stream(), seed=0)
    assert len(run.R) == 3 and all(len(row) == 3 for row in run.R)
    assert all(run.R[i][j] is None for i in range(3) for j in range(i + 1, 3))
    assert _final_rows_equal_diagonal(run.R)
    assert run.final == run.R[-1] and len(run.stage_seconds) == 3
    assert all(v > 60.0 for v in run.final)  # the tasks are learnable: well above chance (50%)


def test_finetune_moves_the_trunk_that_earlier_tasks_read():
    config, stream = tiny_config(), tiny_stream()
    torch.manual_seed(0)
    run = run_method("finetune", config, stream, seed=0)
    assert len(run.R) == 3
    # fine-tuning forgets on these tasks (their directions differ): some earlier entry changes
    assert not _final_rows_equal_diagonal(run.R)


def test_joint_has_one_stage_and_no_matrix():
    run = run_method("joint", tiny_config(), tiny_stream(), seed=0)
    assert run.R is None and len(run.final) == 3 and len(run.stage_seconds) == 1


def test_rsn2_and_packnet_carve_disjoint_subnetworks_of_the_configured_size():
    config, stream = tiny_config(), tiny_stream()
    for method in ("rsn2", "rsn2-all", "packnet", "packnet-disjoint"):
        run = run_method(method, config, stream, seed=1)
        for name, kept in run.details["kept_fraction"].items():
            assert kept == pytest.approx(0.3, abs=0.01), (method, name)
        reads = list(run.details["read_fraction"].values())
        if method in ("rsn2-all", "packnet"):  # every later task reads every earlier one's positions
            assert (
                reads[0] == 0.0
                and reads[1] == pytest.approx(0.3, abs=0.01)
                and reads[2] == pytest.approx(0.6, abs=0.02)
            )
        else:
            assert reads == [0.0, 0.0, 0.0]
    select = run_method("rsn2-select", config, stream, seed=1).details
    for name in ("t1", "t2"):  # WSN's rule: what a task owns and reads together is its keep fraction
        assert 0 < select["read_fraction"][name] and select["kept_fraction"][name] + select["read_fraction"][
            name
        ] == pytest.approx(0.3, abs=0.01)
    assert select["selection"]["transfer"] == "select"


def test_packnet_zeroes_the_positions_a_task_releases_and_the_disjoint_variant_does_not(monkeypatch):
    config, stream = tiny_config(), tiny_stream(1)
    real_stage = methods.packnet_stage
    networks = []

    def stage(network, *a, **k):
        result = real_stage(network, *a, **k)
        networks.append(network)
        return result

    monkeypatch.setattr(methods, "packnet_stage", stage)
    for method, zeroed in (("packnet", True), ("packnet-disjoint", False)):
        run_method(method, config, stream, seed=0)
        free = [layer.weight.detach()[layer.free_mask] for _, layer in networks[-1].multitask_layers()]
        free = torch.cat([f for f in free if f.numel()])
        assert bool((free == 0).all()) is zeroed, method


def test_packnet_keeps_the_largest_trained_magnitudes():
    config, stream = tiny_config(), tiny_stream(1)
    networks = BenchmarkNetwork.of(config, stream[0].input_shape)
    net = networks.new([networks.task_spec(stream[0])])
    probe = networks.new([networks.task_spec(stream[0])])
    own_all_free(probe, "t0")
    with torch.no_grad():
        for _, layer in probe.multitask_layers():
            layer.weight.normal_()
    before = {k: layer.owner.clone() for k, layer in net.multitask_layers()}
    select_subnetworks(
        net, ["t0"], selection=SelectionConfig(method=TrainedMagnitude(probe), rescale=False, reinit=False)
    )
    assert not ownership_problems(net, before=before)
    probe_layers = dict(probe.multitask_layers())
    key, layer = next(iter(net.multitask_layers()))  # the first trunk layer, pruned to 30%
    kept = layer.mask("t0")
    magnitudes = probe_layers[key].weight.abs()
    assert int(kept.sum()) == round(0.3 * kept.numel())
    assert magnitudes[kept].min() >= magnitudes[~kept].max()


def test_packnet_dense_phase_rescales_what_is_left_free():
    config, stream = tiny_config(), tiny_stream(2)
    networks = BenchmarkNetwork.of(config, stream[0].input_shape)
    net = networks.new([networks.task_spec(t) for t in stream])
    select_subnetworks(net, ["t0"], method="random")
    before = {k: layer.weight.detach().clone() for k, layer in net.multitask_layers()}
    own_all_free(net, "t1", rescale=True)
    key, layer = next(iter(net.multitask_layers()))  # the first trunk layer: 70% of it was left free
    free = layer.mask("t1")
    assert int(free.sum()) == layer.total_positions - layer.owned_count("t0")
    factor = (layer.total_positions / int(free.sum())) ** 0.5
    assert torch.allclose(layer.weight[free], before[key][free] * factor)
    assert torch.equal(layer.weight[~free], before[key][~free])


def test_capacity_runs_out_with_a_clear_error_before_anything_changes():
    config = tiny_config(keep_fraction=0.5)
    with pytest.raises(CapacityError, match="can never hold the new task"):
        run_method("rsn2", config, tiny_stream(3), seed=0)


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_with_distance_and_strength():
    config, stream = tiny_config(), tiny_stream(2)
    net = BenchmarkNetwork.of(config, stream[0].input_shape).shared_by_all(stream)
    select_subnetworks(net, ["t0", "t1"], method="random")
    params = trunk_parameters(net)
    weak, strong = EWCPenalty(params, 1.0), EWCPenalty(params, 100.0)
    for p in (weak, strong):
        p.consolidate(net, "t0", stream[0].x_train[:32], stream[0].y_train[:32])
    assert float(weak().detach()) == 0.0
    assert all(bool((f >= 0).all()) for f in weak.anchors[0][0])
    with torch.no_grad():
        params[0].add_(0.1)
    assert float(weak().detach()) > 0.0
    assert math.isclose(float(strong().detach()), 100.0 * float(weak().detach()), rel_tol=1e-5)


def test_ewc_with_a_strong_penalty_forgets_less_than_finetuning():
    stream = tiny_stream(3, n=128)
    config: BenchmarkConfig = tiny_config(methods={"finetune": {}, "ewc": {"lambda": 1e4, "fisher_samples": 64}})
    drops = {}
    for method in ("finetune", "ewc"):
        r = run_method(method, config, stream, seed=0).R
        drops[method] = sum(r[j][j] - r[-1][j] for j in range(2))
    assert drops["ewc"] < drops["finetune"]


def test_accuracy_matches_evaluate():
    config, stream = tiny_config(), tiny_stream(1)
    run = run_method("stl", config, stream, seed=0)
    assert 0.0 <= run.final[0] <= 100.0
    net = BenchmarkNetwork.of(config, stream[0].input_shape).shared_by_all(stream)
    select_subnetworks(net, ["t0"], method="random")
    expected = 100.0 * evaluate(net, "t0", stream[0].x_test, stream[0].y_test)["metric"]
    from rsn2.continual.methods import accuracy

    assert accuracy(net, stream[0]) == expected


MODULE_NETWORK = {"module": "tests.user_models:FlatBatchNormNet", "input_shape": [8]}


@pytest.mark.parametrize("method", ["rsn2", "packnet", "stl"])
def test_a_users_module_with_batch_norm_runs_every_isolating_method_without_forgetting(method):
    """The benchmark's network is the user's own nn.Module (BatchNorm1d inside): every isolating
    method keeps each earlier task's accuracy exactly, its statistics included."""
    run = run_method(method, tiny_config(network=MODULE_NETWORK), tiny_stream(), seed=0)
    assert _final_rows_equal_diagonal(run.R)
    assert all(v > 60.0 for v in run.final)


def test_the_baselines_share_the_whole_users_module_and_forget():
    config, stream = tiny_config(network=MODULE_NETWORK), tiny_stream()
    net = BenchmarkNetwork.of(config, stream[0].input_shape).shared_by_all(stream)
    assert {s.subnetwork for s in net.path("t0") if s.key.startswith("body.")} == {"shared"}
    assert not _final_rows_equal_diagonal(run_method("finetune", config, stream, seed=0).R)
    joint = run_method("joint", config, stream, seed=0)
    assert len(joint.final) == 3 and all(v > 60.0 for v in joint.final)


def test_packnet_on_a_users_module_keeps_the_trained_batch_norm_of_its_dense_phase():
    config, stream = tiny_config(network=MODULE_NETWORK), tiny_stream(1)
    run = run_method("packnet", config, stream, seed=0)
    assert run.details["kept_fraction"]["t0"] == pytest.approx(0.3, abs=0.01)
    assert run.final[0] > 60.0


def test_a_module_that_does_not_take_the_streams_inputs_is_refused_with_the_shape():
    from rsn2.errors import ConfigError

    config = tiny_config(network={"module": "tests.user_models:TinyResNet", "input_shape": [8]})
    with pytest.raises(ConfigError, match=r"does not take inputs of shape \[8\]"):
        run_method("rsn2", config, tiny_stream(), seed=0)
    config = tiny_config(network={"module": "tests.user_models:FlatBatchNormNet", "input_shape": [16]})
    with pytest.raises(ConfigError, match=r"network.input_shape is \[16\] but the stream's samples have shape \[8\]"):
        run_method("rsn2", config, tiny_stream(), seed=0)


def test_subnetwork_methods_record_wsns_capacity_and_each_tasks_weights():
    config, stream = tiny_config(), tiny_stream()
    none, reading = (run_method(m, config, stream, seed=0).details for m in ("rsn2", "rsn2-all"))
    for details in (none, reading):
        storage = details["storage"]
        assert storage["positions"] == 8 * 16 + 16 * 16  # the MLP trunk's two kernels
        assert storage["used"] == sum(int(0.3 * n) for n in (128, 256)) * 3
        mask_bits = storage["owner_map_bits"] + storage["read_set_bits"]
        assert storage["capacity"] == pytest.approx((32 * storage["used"] + mask_bits) / (32 * storage["positions"]))
        assert storage["model_file_bytes"] > 4 * storage["used"]
    assert none["storage"]["read_set_bits"] == 0 < reading["storage"]["read_set_bits"]
    own = none["task_weights"]
    assert own["t0"] == own["t1"] == own["t2"]  # heads are the same size here
    reads = reading["task_weights"]
    assert reads["t0"] == own["t0"] < reads["t1"] < reads["t2"]  # PackNet's rule: each task reads all before it


def test_an_rsn2_mode_may_keep_its_own_fraction_counting_what_it_reads():
    config = tiny_config(methods={"rsn2-select": {"keep_fraction": 0.5}}, keep_fraction=0.3)
    details = run_method("rsn2-select", config, tiny_stream(), seed=0).details
    for name in ("t0", "t1", "t2"):  # the benchmark's 30% would not fit three tasks at 50%; reads make room
        assert details["kept_fraction"][name] + details["read_fraction"][name] == pytest.approx(0.5, abs=0.01)
    assert details["read_fraction"]["t2"] > 0


@pytest.mark.parametrize("method", ["rsn2", "packnet", "stl", "joint", "finetune"])
def test_a_run_records_the_precision_its_stages_trained_in(method, monkeypatch):
    import rsn2.continual.dense_baselines
    import rsn2.training.loop

    for module in (rsn2.training.loop, rsn2.continual.dense_baselines):  # as on a CPU with bf16 units
        monkeypatch.setattr(module, "resolve_precision", lambda *a: "bf16")
    run = run_method(method, tiny_config(), tiny_stream(2), seed=0)
    assert run.precision == "bf16" and run.to_dict()["precision"] == "bf16"
