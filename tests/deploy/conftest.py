"""A real ``rsn2 serve`` of the model trained on raw files of every input kind (``raw_model``, tests/conftest.py)."""

import pytest

from tests.deploy.server_process import running_server


@pytest.fixture(scope="session")
def served(raw_model):
    """``rsn2 serve`` of the raw model (one server for every test that asks); yields its base URL."""
    with running_server(raw_model.path, "--max-wait-ms", "1") as (base, _):
        yield base
