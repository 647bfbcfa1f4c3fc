"""`python -m benchmarks.gpu` on the CPU: its report is written whole (a file of its own, so that
pytest-xdist runs this long test beside the other benchmark tests)."""

import json

import pytest


@pytest.mark.slow
def test_gpu_benchmark_runs_on_the_cpu_and_writes_its_report(tmp_path, monkeypatch):
    import benchmarks.training
    import benchmarks.training_precision
    from benchmarks import gpu

    for module in (benchmarks.training, benchmarks.training_precision):  # the pipeline, not the timings:
        monkeypatch.setattr(module, "BATCH", 32)  # bf16 without bf16 units is slow at 512
    js, md = tmp_path / "g.json", tmp_path / "g.md"
    assert gpu.main(["--device", "cpu", "--quick", "--json", str(js), "--markdown", str(md)]) == 0
    results = json.loads(js.read_text())
    assert results["machine"]["device"].startswith("cpu: ")
    assert [r["architecture"] for r in results["precision"]] == ["fc-a", "conv-a"]
    assert "tf32_speedup" not in results["precision"][0]  # TF32 is a CUDA candidate only
    assert {(r["tasks"], r["batch"]) for r in results["fc_a"]} == {(1, 1), (1, 64), (10, 1), (10, 64)}
    assert max(r["max_rel_diff"] for r in results["fc_a"] + results["conv_a"]) < 1e-5
    assert md.read_text().startswith("Command: `python -m benchmarks.gpu --device cpu --quick")
