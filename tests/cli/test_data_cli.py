import json

import pytest

from rsn2.cli.main import main


def test_data_list_reports_missing(tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"mnist", "fashion-mnist", "cifar-10", "boston", "imdb", "utkface", "omniglot"}
    assert all(r["status"] == "missing" for r in rows)


def test_data_verify_fails_on_corrupt_and_unknown(tmp_path, capsys):
    (tmp_path / "boston").mkdir()
    (tmp_path / "boston" / "boston.csv").write_text("corrupt\n")
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 1
    assert "FAILED  boston" in capsys.readouterr().out
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    assert "NO" in capsys.readouterr().out
    assert main(["data", "download", "svhn", "--data-dir", str(tmp_path)]) == 1
    assert "unknown dataset" in capsys.readouterr().err


@pytest.mark.real_data
def test_data_list_and_verify_real(shared_data, capsys):
    assert main(["data", "verify", "--data-dir", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == 7
    assert main(["data", "list", "--data-dir", str(shared_data), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["status"] == "found" and r["verified"] for r in rows)
