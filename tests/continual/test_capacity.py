import json

import pytest

import rsn2.continual.capacity as capacity
from rsn2.errors import ConfigError, ResultsFolderError

from .helpers_cl import tiny_config, tiny_stream

PERMUTED = {"kind": "permuted", "dataset": "mnist", "tasks": 3}


@pytest.fixture
def synthetic_stream(monkeypatch):
    monkeypatch.setattr(capacity, "build_stream", lambda *a, tasks, **k: tiny_stream(tasks))


def test_sweep_runs_each_fraction_until_a_task_is_refused(tmp_path, synthetic_stream):
    config = tiny_config(stream=PERMUTED)
    results = capacity.capacity_sweep(
        config, tmp_path, fractions=[0.3, 0.5], max_tasks=5, reference_tasks=2, log=lambda _: None
    )
    third, half = results["fractions"]["0.3"], results["fractions"]["0.5"]
    assert third["tasks"] == 3 and half["tasks"] == 2  # 3 x 30% fit, a 4th does not
    assert third["capacity_error"].startswith("task 4 (t3): layer") and "can never hold" in third["capacity_error"]
    assert third["BWT"] == 0.0 and len(third["learned"]) == 3
    assert results["stl_reference"]["tasks"] == 2 and len(results["stl_reference"]["values"]) == 2
    assert (tmp_path / "capacity.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text()) == results


def test_sweep_reuses_finished_fractions_and_refuses_other_settings(tmp_path, synthetic_stream, monkeypatch):
    config = tiny_config(stream=PERMUTED)
    first = capacity.capacity_sweep(config, tmp_path, fractions=[0.5], max_tasks=3, reference_tasks=1, log=print)
    monkeypatch.setattr(capacity, "run_until_full", lambda *a, **k: pytest.fail("a stored fraction was rerun"))
    again = capacity.capacity_sweep(config, tmp_path, fractions=[0.5], max_tasks=3, reference_tasks=1, log=print)
    assert again == first
    with pytest.raises(ResultsFolderError, match="other settings"):
        capacity.capacity_sweep(config, tmp_path, fractions=[0.5], max_tasks=4, reference_tasks=1, log=print)


def test_first_task_below_stl_is_found():
    record = {
        "tasks": ["a", "b", "c"],
        "R": [[97.0, None, None], [97.0, 96.5, None], [97.0, 96.5, 95.0]],
        "details": {},
        "stage_seconds": [1.0, 1.0, 1.0],
    }
    row = capacity.summarize_fraction(record, stl_acc=97.2)
    assert row["learned"] == [97.0, 96.5, 95.0] and row["first_below_stl"] == 3
    assert row["capacity_error"] is None and row["BWT"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"fractions": [0.0]}, r"in \(0, 1\]"), ({"max_tasks": 2, "reference_tasks": 3}, "reference_tasks")],
)
def test_bad_sweep_settings_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        capacity.capacity_sweep(tiny_config(stream=PERMUTED), tmp_path, **kwargs)


def test_sweep_needs_a_permuted_stream(tmp_path):
    with pytest.raises(ConfigError, match="permuted stream"):
        capacity.capacity_sweep(tiny_config(), tmp_path)


def test_summary_adds_the_capacity_table(tmp_path, synthetic_stream, monkeypatch):
    import rsn2.continual.runner as runner
    from rsn2.continual.summary import write_summary

    monkeypatch.setattr(runner, "build_stream", lambda *a, **k: tiny_stream(3))
    runner.run_benchmark(tiny_config(methods={"rsn2": {}}), tmp_path / "tiny", seeds=1, log=lambda _: None)
    config = tiny_config(stream=PERMUTED)
    capacity.capacity_sweep(config, tmp_path / "capacity", fractions=[0.5], max_tasks=3, reference_tasks=1, log=print)
    _, readme = write_summary(tmp_path)
    text = readme.read_text()
    assert "## Capacity:" in text and "| 50% | 2 |" in text and "task 3 (t2): layer" in text
