"""Writes this example's data from scikit-learn's bundled datasets (the files are committed; rerun to
recreate them): iris.csv, digits/<class>/*.png (8x8 grey) and diabetes.csv."""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_diabetes, load_digits, load_iris

HERE = Path(__file__).resolve().parent


def main() -> None:
    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = [",".join([*names, "species"])]
    rows += [",".join([*(f"{v:g}" for v in x), iris.target_names[y]]) for x, y in zip(iris.data, iris.target)]
    (HERE / "iris.csv").write_text("\n".join(rows) + "\n")

    digits = load_digits()
    rng = np.random.default_rng(0)
    for label in range(10):
        folder = HERE / "digits" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        picks = rng.choice(np.flatnonzero(digits.target == label), size=40, replace=False)
        for i in picks:
            pixels = (digits.images[i] * 255 / 16).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")

    diabetes = load_diabetes(scaled=False)
    columns = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "progression"]
    rows = [",".join(columns)]
    rows += [",".join(f"{v:g}" for v in [*x, y]) for x, y in zip(diabetes.data, diabetes.target)]
    (HERE / "diabetes.csv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
