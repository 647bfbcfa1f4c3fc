import json

from benchmarks.ablation_table import ablation_tables, experiment_table


def _results(path, tasks, seeds=1, selection=None, device="cuda: NVIDIA H200"):
    path.mkdir(parents=True)
    rows = {
        t: {
            "metric": "accuracy",
            "kept_fraction": None if t == "ensemble" else 0.2,
            "multitask": {"mean": m, "std": 0.01},
            "control": {"mean": c, "std": 0.0},
        }
        for t, (m, c) in tasks.items()
    }
    body = {"tasks": rows, "seeds": seeds, "device": device, "selection": selection}
    (path / "results.json").write_text(json.dumps(body))


def test_rows_show_accuracy_gap_to_own_control_and_the_screen(tmp_path):
    _results(tmp_path / "ablations/full/exp1-paper", {"f0": (0.88, 0.91), "f4": (0.80, 0.91), "ensemble": (0.5, 0.9)})
    screen = {
        "control": {"f0": 0.7, "f4": 0.7},
        "variants": {"paper": {"metric": {"f0": 0.6, "f4": 0.1}, "output_std": {"f0": 0.1, "f4": 1e-9}}},
    }
    (tmp_path / "ablations/screen-exp1.json").write_text(json.dumps(screen))
    table = experiment_table(tmp_path, "exp1", tmp_path / "ablations")
    paper = next(line for line in table.splitlines() if line.startswith("| paper"))
    cells = [c.strip() for c in paper.split("|")[1:-1]]
    assert cells[1] == "[cuda, 1 seed](full/exp1-paper/report.md)"
    assert cells[2:5] == ["88.0 (+3.0)", "80.0 (+11.0)", "50.0 (+40.0)"]
    assert cells[5] == "+11.0"  # the worst gap counts subnetworks, not the ensemble
    assert cells[6:] == ["+60.0", "1e-09 (f4)"]
    assert "| rescale_lr | not run |" in table  # no run: nothing filled in


def test_a_main_result_from_before_todays_defaults_is_not_counted(tmp_path):
    _results(tmp_path / "exp6", {"cifar": (0.6, 0.7)}, seeds=1, selection=None)
    assert "| defaults, 3 seeds | not run |" in experiment_table(tmp_path, "exp6", tmp_path)
    _results(tmp_path / "exp2", {"easy": (0.97, 0.976)}, seeds=3, selection={"reinit": True})
    assert "| defaults, 3 seeds | [cuda, 3 seeds](exp2/report.md) | 97.0 ± 1.0 (+0.6) |" in ablation_tables(tmp_path)
