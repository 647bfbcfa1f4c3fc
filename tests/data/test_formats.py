"""Readers on tiny files written by the tests in each real format."""

import gzip
import io
import json
import struct
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from rsn2.data import Vocabulary, age_decade, class_subset, fashion_easy_hard, tokenize
from rsn2.data.datasets import Dataset, Split
from rsn2.data.formats.cifar_binary import RECORD, read_cifar_binary
from rsn2.data.formats.idx import read_idx
from rsn2.data.formats.image_folder import read_image_folder
from rsn2.data.formats.reviews import read_aclimdb_reviews, read_jsonl_reviews
from rsn2.data.formats.utkface import parse_name, read_utkface
from rsn2.errors import DataError


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def jpeg_bytes(color, size=(8, 8), fmt="JPEG"):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def test_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(raw[:-1])
    with pytest.raises(DataError, match=r"short\.gz: IDX declares shape \(2, 3, 4\)"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"junk\.gz cannot be read"):
        read_idx(tmp_path / "junk.gz")
    with gzip.open(tmp_path / "magic.gz", "wb") as f:
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "magic.gz")


@pytest.mark.parametrize("as_zip", [False, True])
def test_image_folder_dir_and_zip(tmp_path, as_zip):
    files = {
        "train/cat/0.jpg": jpeg_bytes((255, 0, 0)),
        "train/ant/0.png": jpeg_bytes((0, 255, 0), fmt="PNG"),
        "train/ant/1.jpg": jpeg_bytes((0, 0, 255)),
        "test/cat/0.jpg": jpeg_bytes((9, 9, 9)),
    }
    if as_zip:
        source = tmp_path / "imgs.zip"
        with zipfile.ZipFile(source, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
    else:
        source = tmp_path / "imgs"
        for name, data in files.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
    split = read_image_folder(source, "train")
    assert split.classes == ["ant", "cat"] and split.labels.tolist() == [0, 0, 1]
    assert split.images.shape == (3, 3, 8, 8) and split.images.dtype == np.uint8
    assert split.images[0, 1].mean() > 200  # the green PNG, in sorted order
    small = read_image_folder(source, "train", size=(4, 4), channels=1)
    assert small.images.shape == (3, 1, 4, 4)
    with pytest.raises(DataError, match="not among the expected"):
        read_image_folder(source, "train", classes=["cat"])
    with pytest.raises(DataError, match="no images found"):
        read_image_folder(source, "val")


def test_image_folder_bad_image(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"x\.jpg is not a readable image"):
        read_image_folder(tmp_path, size=(4, 4))


def test_cifar_binary_from_tar_and_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    expected = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        recs = rng.integers(0, 256, size=(3, RECORD), dtype=np.uint8)
        recs[:, 0] = rng.integers(0, 10, size=3)
        (folder / name).write_bytes(recs.tobytes())
        expected[name] = recs
    tar_path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    for source in (tar_path, folder):
        x, y = read_cifar_binary(source, "train")
        assert x.shape == (15, 3, 32, 32) and y.shape == (15,)
        assert y[:3].tolist() == expected["data_batch_1.bin"][:, 0].tolist()
        assert np.array_equal(x[0].reshape(-1), expected["data_batch_1.bin"][0, 1:])
        xt, _ = read_cifar_binary(source, "test")
        assert len(xt) == 3
    (folder / "test_batch.bin").write_bytes(b"\x00" * (RECORD + 5))
    with pytest.raises(DataError, match="not a whole number"):
        read_cifar_binary(folder, "test")


def test_reviews_from_aclimdb_tar_and_jsonl(tmp_path):
    reviews = [("train", "pos", 3, "Great <br />film!"), ("train", "neg", 1, "bad"), ("test", "pos", 0, "ok")]
    tar_path = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for split, label, rid, text in reviews:
            data = text.encode()
            info = tarfile.TarInfo(f"aclImdb/{split}/{label}/{rid}_7.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    train = read_aclimdb_reviews(tar_path, "train")
    assert [(r.label, r.id) for r in train] == [(0, 1), (1, 3)]
    with gzip.open(tmp_path / "train.jsonl.gz", "wt") as f:
        for _, label, rid, text in reversed(reviews[:2]):
            f.write(json.dumps({"text": text, "label": int(label == "pos"), "id": rid, "rating": 7}) + "\n")
    assert read_jsonl_reviews(tmp_path / "train.jsonl.gz") == train
    with gzip.open(tmp_path / "bad.jsonl.gz", "wt") as f:
        f.write('{"text": "x"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz line 1"):
        read_jsonl_reviews(tmp_path / "bad.jsonl.gz")


def test_tokenize_vocabulary_and_padding():
    assert tokenize("It's GREAT.<br />Really great!") == ["it's", "great", "really", "great"]
    vocab = Vocabulary.build(["b a a", "c a b"], size=2)
    assert vocab.words == ("a", "b") and vocab.num_embeddings == 4
    ids = vocab.encode(["a b c a", "b"], length=3)
    assert ids.tolist() == [[2, 3, 1], [3, 0, 0]]  # truncated / padded at the end, c is out-of-vocabulary


def test_utkface_names_and_age_classes(tmp_path):
    assert parse_name("UTKFace/24_0_1_20170116220224657 .jpg.chip.jpg") == (24, 0, 1)
    assert parse_name("55_0_0_20170116232725357jpg.chip.jpg") == (55, 0, 0)
    assert parse_name("39_1_20170116174525125.jpg.chip.jpg") is None
    assert age_decade(np.array([1, 10, 11, 20, 21, 90, 91, 116])).tolist() == [0, 0, 1, 1, 2, 8, 9, 9]
    z = tmp_path / "faces.zip"
    with zipfile.ZipFile(z, "w") as archive:
        archive.writestr("UTKFace/30_1_2_1.jpg.chip.jpg", jpeg_bytes((200, 10, 10), (16, 16)))
        archive.writestr("UTKFace/5_0_4_2.jpg.chip.jpg", jpeg_bytes((10, 10, 200), (16, 16)))
        archive.writestr("UTKFace/61_1_3.jpg.chip.jpg", jpeg_bytes((0, 0, 0), (16, 16)))  # no race: skipped
    faces = read_utkface(z, (8, 8))
    assert faces.images.shape == (2, 3, 8, 8)
    assert faces.age.tolist() == [30, 5] and faces.gender.tolist() == [1, 0] and faces.race.tolist() == [2, 4]


def test_class_subset_relabels_in_given_order():
    x = torch.arange(10).float().unsqueeze(1)
    data = Dataset("f", Split(x, torch.arange(10)), Split(x, torch.arange(10)), [str(i) for i in range(10)])
    easy, hard = fashion_easy_hard(data)
    assert easy.train.y.tolist() == [0, 1, 2, 3, 4] and easy.train.x[:, 0].tolist() == [1, 5, 7, 8, 9]
    assert hard.classes == ["0", "2", "3", "4", "6"]
    sub = class_subset(data, (9, 0), "x")
    assert sub.test.y.tolist() == [1, 0]
