import json

import pytest

from benchmarks import timing
from benchmarks.__main__ import _targets, main
from benchmarks.timing import side_by_side


class _Clock:
    """A clock that moves only when a candidate runs: each call costs the candidate's set seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def perf_counter(self) -> float:
        return self.now

    def candidate(self, name: str, cost: float):
        def call() -> None:
            self.now += cost
            self.calls.append(name)

        return call


def test_side_by_side_measures_each_candidate_and_alternates_the_order(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(timing, "time", clock)
    t = side_by_side(
        {"base": clock.candidate("base", 0.002), "slow": clock.candidate("slow", 0.006)},
        "base",
        rounds=3,
        min_time=0.012,
    )
    assert t.seconds == pytest.approx({"base": 0.002, "slow": 0.006})
    assert t.speedup == pytest.approx({"base": 1.0, "slow": 1 / 3})
    timed = clock.calls[4:]  # after one warm-up call each and one call each to size the turns
    assert timed == ["base"] * 6 + ["slow"] * 2 + ["slow"] * 2 + ["base"] * 6 + ["base"] * 6 + ["slow"] * 2


def test_side_by_side_needs_its_baseline():
    with pytest.raises(ValueError, match="baseline 'x'"):
        side_by_side({"a": lambda: None}, "x")


def test_targets_report_met_and_missed():
    results = {
        "fc_a": [
            {"batch": 1, "speedup": 5.5, "max_rel_diff": 1e-7},
            {"batch": 1, "speedup": 3.5, "max_rel_diff": 1e-7},
            {"batch": 512, "speedup": 2.0, "max_rel_diff": 2e-5},
        ],
        "conv_a": [
            {"batch": 1, "speedup": 1.6, "max_rel_diff": 0.0},
            {"batch": 64, "speedup": 1.0, "max_rel_diff": 0.0},
        ],
        "conv_b": [
            {"batch": 1, "speedup": 1.2, "max_rel_diff": 0.0},
            {"batch": 64, "speedup": 1.3, "max_rel_diff": 0.0},
        ],
        "training_step": {"slowdown": 1.05},
        "files": [{"tasks": 10, "ratio": 1.2}],
    }
    status = {(r["figure"].split(",")[0], r["issue"], r["target"]): r["status"] for r in _targets(results)}
    assert status == {
        ("FC-A per-task inference speedup", "#5", 3.0): "met",  # the worst task count counts
        ("FC-A per-task inference speedup", "#14", 5.0): "MISSED",
        ("FC-A per-task inference speedup", "#5", 1.5): "met",
        ("FC-A per-task inference speedup", "#14", 3.0): "MISSED",
        ("CONV-A per-task inference speedup", "#14", 1.5): "met",
        ("CONV-A per-task inference speedup", "#14", 1.2): "MISSED",
        ("CONV-B per-task inference speedup", "#14", 1.5): "MISSED",
        ("CONV-B per-task inference speedup", "#14", 1.2): "met",
        ("max relative difference to the masked path", "#14", 1e-5): "MISSED",
        ("training step time / dense control", "#5", 1.1): "met",
        ("10-task model file / one dense model", "#5", 1.15): "MISSED",
    }


def test_files_section_writes_json_and_markdown(tmp_path, capsys):
    assert (
        main(
            ["--quick", "--sections", "files", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
        )
        == 0
    )
    results = json.loads((tmp_path / "r.json").read_text())
    rows = {r["tasks"]: r for r in results["files"]}
    assert set(rows) == {2, 10}
    assert rows[10]["ratio"] <= 1.15 and rows[2]["ratio"] < rows[10]["ratio"]
    assert results["command"] == "python -m benchmarks --quick --sections files"  # a subset is named
    assert "Model file bytes" in (tmp_path / "r.md").read_text()
    assert "10-task model file" in capsys.readouterr().out


def test_unknown_section_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--sections", "inference,speed"])
    assert "unknown section(s) ['speed']" in capsys.readouterr().err


def test_precision_targets_depend_on_the_cpus_bf16_units():
    rows = [
        {"architecture": "fc-a", "auto_speedup": 1.4},
        {"architecture": "conv-a", "auto_speedup": 1.6},
    ]
    for bf16_units, conv_status in ((True, "MISSED"), (False, "met")):
        results = {"machine": {"bf16_units": bf16_units}, "precision": rows}
        status = {r["figure"].split(", ")[1]: (r["target"], r["status"]) for r in _targets(results)}
        assert status["fc-a"] == (1.3, "met")
        assert status["conv-a"] == (2.0 if bf16_units else 1.3, conv_status)


@pytest.mark.slow  # times training steps in every precision and memory format
def test_precision_steps_compare_each_candidate_with_fp32():
    import torch

    from benchmarks.training_precision import precision_steps
    from rsn2.training.precision import resolve_precision

    (row,) = precision_steps(1, 0.01, ("fc-a",))
    assert row["architecture"] == "fc-a" and row["tasks"] == 2 and row["fp32_ms"] > 0
    assert row["auto_picks"] == resolve_precision("auto", torch.device("cpu"))  # no conv: no channels_last
    assert row["auto_speedup"] == (1.0 if row["auto_picks"] == "fp32" else row["bf16_speedup"])
    assert "fp32-channels-last_speedup" not in row


@pytest.mark.slow
def test_serve_load_sends_raw_inputs_and_malformed_requests_and_counts_no_5xx(tmp_path):
    from benchmarks import serve_load

    out, js = tmp_path / "serving.md", tmp_path / "serving.json"
    args = ["--requests", "60", "--concurrency", "4", "--malformed", "0.1", "--out", str(out), "--json", str(js)]
    assert serve_load.main(args) == 0
    rows = json.loads(js.read_text())["rows"]
    for row in rows:
        assert row["requests"] == 60 and row["malformed"] == 6 and row["5xx"] == 0 and row["alive_after"]
        assert row["status_codes"]["200"] == 54 and sum(row["status_codes"].values()) == 60
        assert row["malformed_not_4xx"] == 0 and row["passed"] and row["rss_mb_after"] > 0
    assert rows[0]["digit_p50_ms"] > 0 and rows[1]["digit_p50_ms"] == rows[1]["p50_ms"]  # the control: digits only
    assert out.read_text().startswith("Command: `python -m benchmarks.serve_load --requests 60")


@pytest.mark.slow
def test_serve_memory_counts_what_task_models_hold(tmp_path):
    from benchmarks import serve_memory

    fc, fc_compact, fc_half, conv, conv_compact = serve_memory.run(
        {"fc-a": [2], "conv-a": [2]}, ("byte", "compact", "byte-bf16")
    )[:5]
    assert (fc["arch"], fc["tasks"], conv["arch"], conv["keep"]) == ("fc-a", 2, "conv-a", 0.2)
    assert [r["steps"] for r in (fc, fc_compact, fc_half, conv, conv_compact)] == [
        "byte",
        "compact",
        "byte-bf16",
        "byte",
        "compact",
    ]
    assert 0 < fc["held_MB"] <= fc["rsn2_MB"] * 1.5
    assert fc["vs_dense_models"] < 1  # two 10% tasks take less than two dense models
    assert fc_compact["held_MB"] < 0.95 * fc["held_MB"]  # 4-bit steps: about 4.6 bytes a weight, not 5
    assert fc_half["held_MB"] < 0.7 * fc["held_MB"]  # bfloat16 values: about 3 bytes a weight, not 5
    assert conv["held_MB"] > 0 and conv["dense_models_MB"] > 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_gpu_benchmark_without_a_gpu_says_so(capsys):
    from benchmarks import gpu

    assert gpu.main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_float32_matmuls_restores_the_settings_it_changed():
    import torch

    from benchmarks.training_precision import float32_matmuls

    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with float32_matmuls("tf32"):
        assert matmul.fp32_precision == "tf32"
        with float32_matmuls("ieee"):
            assert matmul.fp32_precision == "ieee"
        assert matmul.fp32_precision == "tf32"
    assert matmul.fp32_precision == before


def test_per_task_inference_covers_every_served_architecture():
    from benchmarks.inference import model_inference
    from benchmarks.models import SERVED

    assert set(SERVED) == {"fc-a", "conv-a", "conv-b"}
    rows = model_inference("conv-b", (1,), (2,), rounds=1, min_time=0.0)
    assert [(r["arch"], r["keep"], r["batch"]) for r in rows] == [("conv-b", 0.25, 2)]
    row = rows[0]
    assert row["max_rel_diff"] < 1e-5
    # one round: each speedup is the control's time over the candidate's in that round
    assert row["speedup"] == pytest.approx(row["control_ms"] / row["rsn2_ms"])
    assert row["masked_speedup"] == pytest.approx(row["control_ms"] / row["masked_ms"])


def test_serving_memory_targets_name_the_layout_and_take_only_ten_fc_a_tasks():
    rows = [
        {"arch": "fc-a", "tasks": 1, "steps": "byte", "vs_one_dense": 0.13},
        {"arch": "fc-a", "tasks": 10, "steps": "byte", "vs_one_dense": 1.31},
        {"arch": "fc-a", "tasks": 10, "steps": "compact", "vs_one_dense": 1.23},
        {"arch": "fc-a", "tasks": 10, "steps": "byte-bf16", "vs_one_dense": 0.8},
        {"arch": "fc-a", "tasks": 10, "steps": "compact-bf16", "vs_one_dense": 1.1},
        {"arch": "conv-a", "tasks": 5, "steps": "byte", "vs_one_dense": 1.5},
    ]
    status = {r["figure"].split(", ")[-1]: (r["measured"], r["status"]) for r in _targets({"serving": rows})}
    assert status == {
        "one-byte steps (default)": (1.31, "MISSED"),
        "4-bit steps (--compact-steps)": (1.23, "met"),
        "bfloat16 values (--values bfloat16)": (0.8, "met"),
        "4-bit steps and bfloat16 values": (1.1, "MISSED"),
    }


@pytest.mark.slow
def test_onnx_export_benchmark_compares_packed_and_dense_files(tmp_path):
    from benchmarks import onnx_export

    (row,) = onnx_export.measure(1, 0.1, [1], repeats=1)
    assert row["size_ratio"] < 1 / 3 and row["packed_MB"] < row["dense_MB"]
    assert row["time_ratio"] == pytest.approx(row["run_ms_packed"] / row["run_ms_dense"])


def test_the_converted_step_benchmark_times_every_candidate(capsys):
    from benchmarks import converted_step

    converted_step.main(["--rounds", "1", "--batch", "4", "--nf", "8"])
    table = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "median" not in line]
    assert rows == ["dense", "first stage", "later stage"]


@pytest.mark.real_data
def test_cl_task_cost_reports_each_methods_stages_and_the_whole_streams_estimate(shared_data, capsys):
    from benchmarks.cl_task_cost import main

    main(
        [
            "benchmarks/cl/split-mnist.yaml",
            "--data-dir",
            str(shared_data),
            "--methods",
            "rsn2,rsn2-all",
            "--tasks",
            "2",
            "--smoke",
        ]
    )
    out = capsys.readouterr().out
    assert "CPU: " in out and "stream of 5 tasks" in out and "kernel weights" in out
    for method in ("rsn2", "rsn2-all"):
        line = next(line for line in out.splitlines() if line.startswith(f"{method} "))
        assert line.count(",") >= 1 and "whole stream at 5 epochs" in line
    assert "peak resident memory" in out


def test_cl_storage_prints_capacity_and_file_size_per_transfer_mode(capsys):
    from benchmarks.cl_storage import main

    main(["--tasks", "3", "--hidden", "8,8", "--inputs", "16"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 3 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["none", "select", "all"]
    first = [int(r.split("|")[6].replace(",", "")) for r in rows]
    last = [int(r.split("|")[7].replace(",", "")) for r in rows]
    assert first[0] == last[0] and last[2] > first[2]  # PackNet's rule: the last task reads the others
    capacity = [float(r.split("|")[3]) for r in rows]
    assert capacity[1] < capacity[0] < capacity[2]  # select owns less; all stores read bitmaps on top


@pytest.mark.real_data
def test_cl_task_scores_counts_per_sample_task_identification_for_every_score(shared_data, tmp_path, capsys):
    from benchmarks.cl_task_scores import main

    out = tmp_path / "scores.json"
    main(["benchmarks/cl/split-mnist.yaml", "--data-dir", str(shared_data), "--smoke", "--out", str(out)])
    result = json.loads(out.read_text())
    table = result["task_id_per_sample"]
    assert set(table) == {"entropy", "max-softmax", "max-logit", "energy", "z-entropy", "percentile"}
    assert all(0.0 <= v <= 100.0 for v in table.values()) and result["smoke"] is True
    assert len(result["task_accuracy"]) == 5 and "per-sample task identification" in capsys.readouterr().out


@pytest.mark.real_data
def test_value_precision_reports_every_task_of_a_saved_model_both_ways(shared_data, tmp_path, capsys):
    from benchmarks.value_precision import main

    out = tmp_path / "precision.md"
    argv = ["--experiments", "exp2,exp3", "--smoke", "--data-dir", str(shared_data), "--out", str(out)]
    assert main(argv) == 0
    table = out.read_text()
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| exp2 ")]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [("exp2", "easy"), ("exp2", "hard")]
    for row in rows:
        full, half, change = (float(row[i]) for i in (3, 4, 5))
        assert 0 < full <= 100 and abs(half - full - change) < 0.01
        assert float(row[9].replace(",", "")) < 0.75 * float(row[8].replace(",", ""))  # bfloat16 KB < float32 KB
    assert "No model file kept in: exp3." in table and "Largest accuracy change:" in table
