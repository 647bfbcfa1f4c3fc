import pytest

from rsn2.data import data_dir, load_mnist, locate
from rsn2.errors import DataError


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("RSN2_DATA", str(tmp_path / "env"))
    assert data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert data_dir() == tmp_path / "env"
    monkeypatch.delenv("RSN2_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache" / "rsn2" / "data"


def test_missing_dataset_says_what_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "mnist") in msg and "train-images-idx3-ubyte.gz" in msg and "rsn2 data download mnist" in msg


def test_corrupt_file_names_file_and_checksum(tmp_path):
    folder = tmp_path / "boston"
    folder.mkdir()
    (folder / "boston.csv").write_text("CRIM,MEDV\n1,2\n")
    with pytest.raises(DataError, match=r"boston\.csv is corrupt or truncated: sha256 [0-9a-f]{64} does not match"):
        locate("boston", tmp_path)
    assert locate("boston", tmp_path, verify=False).layout.name == "csv"


def test_unknown_dataset():
    with pytest.raises(KeyError, match="unknown dataset 'svhn'"):
        locate("svhn")
