"""The ownership audit finds what it is meant to find."""

import torch

from rsn2.layers import FREE
from rsn2.network import MultitaskNetwork
from rsn2.network.dense_control import dense_control
from rsn2.selection import owner_maps, ownership_problems, select_subnetworks
from tests.helpers import mlp_spec


def _selected():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.3))
    select_subnetworks(net, net.task_names, method="random")
    return net


def test_a_freshly_selected_network_and_a_dense_control_pass():
    net = _selected()
    assert ownership_problems(net) == []
    assert ownership_problems(net, owner_maps(net)) == []
    assert ownership_problems(dense_control(mlp_spec(n_tasks=2), "t1")) == []


def test_a_position_taken_from_a_subnetwork_is_found_twice():
    net = _selected()
    before = owner_maps(net)
    layer = net.trunk[0]
    position = (layer.owner == layer.subnetwork_id("t0")).nonzero()[0]
    with torch.no_grad():
        layer.owner[tuple(position)] = FREE
    problems = ownership_problems(net, before)
    want = round(0.3 * layer.total_positions - 0.5)  # floor: what selection asks
    assert f"layer 'trunk.0': subnetwork 't0' owns {want - 1} positions, selection asks {want}" in problems
    assert "layer 'trunk.0': 1 position(s) owned before now have another owner or none" in problems
    assert ownership_problems(net, owner_maps(net)) == problems[:1]  # against its own maps: only the count


def test_a_position_handed_to_another_subnetwork_and_a_free_one_taken_are_found():
    net = _selected()
    before = owner_maps(net)
    layer = net.trunk[2]
    t0, t1 = layer.subnetwork_id("t0"), layer.subnetwork_id("t1")
    with torch.no_grad():
        layer.owner[tuple((layer.owner == t0).nonzero()[0])] = t1
        layer.owner[tuple((layer.owner == FREE).nonzero()[0])] = t1
    problems = ownership_problems(net, before)
    assert any("subnetwork 't0' owns" in p for p in problems)
    assert any("subnetwork 't1' owns" in p for p in problems)
    assert any("1 position(s) owned before" in p for p in problems)  # the free one taken is growth, not a move
