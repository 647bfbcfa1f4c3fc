"""`evaluating`: eval mode for a block, each module's own mode back after it."""

import pytest
from torch import nn

from rsn2.network.modes import evaluating


def test_each_module_gets_its_own_mode_back_even_after_an_error():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    net.train()
    net[1].eval()  # a frozen normalization layer
    for fail in (False, True):
        with pytest.raises(RuntimeError) if fail else evaluating(nn.Identity()):
            with evaluating(net):
                assert not any(m.training for m in net.modules())
                if fail:
                    raise RuntimeError("inside")
        assert [m.training for m in net.modules()] == [True, True, False, True]
