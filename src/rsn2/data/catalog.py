"""What each dataset's files are, where they come from and which checksums are known good.

A dataset can be stored in one of several *layouts* (sets of files). The first layout listed is the
one ``rsn2 data download`` fetches from the canonical public source; the others are equivalent
copies rsn2 also reads (such as the reference copies in ``../shared/data``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rsn2.errors import UnknownDatasetError


@dataclass(frozen=True)
class DataFile:
    """One file of a layout: its name, where to download it (if anywhere) and its known SHA-256s."""

    name: str
    sha256: tuple[str, ...]
    url: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Layout:
    """A complete set of files that holds the whole dataset, in a format rsn2 reads."""

    name: str
    files: tuple[DataFile, ...]
    downloadable: bool = False
    directory: str | None = None  # a folder of files without fixed names (not checksummed)
    content_sha256: str | None = None
    """Check the files by what their archives hold (:mod:`rsn2.data.formats.omniglot`'s PNG digest)
    instead of their bytes: copies repacked from the same images differ in their bytes."""


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset: its folder name under the data directory and its layouts (preferred first)."""

    name: str
    title: str
    layouts: tuple[Layout, ...]
    manual: str | None = None  # how to get it when no layout can be downloaded


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_IDX = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# canonical (as published) and the rsn2 reference copy (recompressed gzip, identical contents)
_MNIST_SHA = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64",
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6",
    ),
}
_FASHION_SHA = {
    "train-images-idx3-ubyte.gz": ("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",),
    "train-labels-idx1-ubyte.gz": ("0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",),
    "t10k-images-idx3-ubyte.gz": ("cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",),
    "t10k-labels-idx1-ubyte.gz": ("8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",),
}

CATALOG: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        "MNIST handwritten digits",
        (Layout("idx", tuple(DataFile(f, _MNIST_SHA[f], _MNIST_URL + f) for f in _IDX), downloadable=True),),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        "Fashion-MNIST",
        (Layout("idx", tuple(DataFile(f, _FASHION_SHA[f], _FASHION_URL + f) for f in _IDX), downloadable=True),),
    ),
    "cifar-10": DatasetInfo(
        "cifar-10",
        "CIFAR-10",
        (
            Layout(
                "binary",
                (
                    DataFile(
                        "cifar-10-binary.tar.gz",
                        ("c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",),
                        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                        170052171,
                    ),
                ),
                downloadable=True,
            ),
            Layout(
                "image-folder-zip",
                (
                    DataFile(
                        "cifar10-images.zip", ("4b5cbe17f4a9a9fd94e17137f12c891da461f124b1c4222b309c1ae4051d781c",)
                    ),
                ),
            ),
        ),
    ),
    "boston": DatasetInfo(
        "boston",
        "Boston Housing",
        (
            Layout(
                "npz",
                (
                    DataFile(
                        "boston_housing.npz",
                        ("f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5",),
                        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/boston_housing.npz",
                    ),
                ),
                downloadable=True,
            ),
            Layout(
                "csv", (DataFile("boston.csv", ("79ac716620024011b03c0c44d2bf99069b8173649181926d9109c25475a3804c",)),)
            ),
        ),
    ),
    "imdb": DatasetInfo(
        "imdb",
        "IMDB Large Movie Review Dataset v1.0",
        (
            Layout(
                "aclImdb",
                (
                    DataFile(
                        "aclImdb_v1.tar.gz",
                        ("c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",),
                        "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                        84125825,
                    ),
                ),
                downloadable=True,
            ),
            Layout(
                "jsonl",
                (
                    DataFile("train.jsonl.gz", ("f6f664cc16d649158af4b41e8676e56586fba55389dba1af5fb8959616a83bd0",)),
                    DataFile("test.jsonl.gz", ("86f6d4ac548bb591fa458d8eeea4e545c0c30398b870bb42006aa684fe1f4ae7",)),
                ),
            ),
        ),
    ),
    "utkface": DatasetInfo(
        "utkface",
        "UTKFace (aligned and cropped)",
        (
            Layout(
                "zip",
                (DataFile("utkface-64.zip", ("45592d4cd7f97a81f5172c6f1efff2d452cd98a87b04c95f9aff258799829e3f",)),),
            ),
            Layout("folder", (), directory="UTKFace"),
        ),
        manual=(
            "UTKFace has no stable direct download: fetch 'Aligned&Cropped Faces' (UTKFace.tar.gz) from the "
            "dataset's page, then either unpack it so that <data-dir>/utkface/UTKFace/*.jpg exist, or point "
            "rsn2.data.load_utkface at the folder or a zip of it (labels are read from the file names)."
        ),
    ),
}


OMNIGLOT_CONTENT_SHA256 = "8745d3284205c70953ebeacd9061b7dfdadc5961afab7b71a1553c9aa5bcb1af"
"""SHA-256 of the lines ``<sha256 of the PNG>  <path>`` of Omniglot's 32,460 PNGs, sorted by path: what
the official archives hold, checked by content because repacked zips differ in their bytes."""

CATALOG["omniglot"] = DatasetInfo(
    "omniglot",
    "Omniglot (background + evaluation)",
    (
        Layout(
            "zip",
            (
                DataFile(
                    "images_background.zip",
                    ("3129f13d5864e3bb3c64fdcdcfebb3bfd770537330d24b7c86ad6bf9bb2d38ec",),
                    "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
                ),
                DataFile(
                    "images_evaluation.zip",
                    ("71f8160accebe1b467092b0a6de61e11d0c76571516ce3828e1331b194ba2834",),
                    "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
                ),
            ),
            content_sha256=OMNIGLOT_CONTENT_SHA256,
        ),
    ),
    manual=(
        "download python/images_background.zip and python/images_evaluation.zip of github.com/brendenlake/omniglot "
        "into <data-dir>/omniglot/. rsn2 checks them by content (every PNG's SHA-256), since archives repacked "
        "from the same PNGs differ in their bytes"
    ),
)


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry for ``name``; raises ``KeyError`` with the known names."""
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {sorted(CATALOG)}") from None
