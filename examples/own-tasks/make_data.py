"""Writes this example's data (the files are committed; rerun to recreate them): iris.csv,
digits/<class>/*.png (8x8 grey) and diabetes.csv from scikit-learn's bundled datasets, and
reviews.jsonl: short made-up film reviews, positive or negative by the words they use (no text
dataset ships with a dependency)."""

import json
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_diabetes, load_digits, load_iris

HERE = Path(__file__).resolve().parent


def main() -> None:
    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = [",".join([*names, "species"])]
    rows += [
        ",".join([*(f"{v:g}" for v in x), iris.target_names[y]]) for x, y in zip(iris.data, iris.target, strict=True)
    ]
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
    rows += [",".join(f"{v:g}" for v in [*x, y]) for x, y in zip(diabetes.data, diabetes.target, strict=True)]
    (HERE / "diabetes.csv").write_text("\n".join(rows) + "\n")

    (HERE / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews(rng)))


POSITIVE = ["wonderful", "moving", "brilliant", "charming", "gripping", "delightful", "superb", "funny"]
NEGATIVE = ["dull", "clumsy", "tedious", "awful", "bland", "confusing", "boring", "forgettable"]
NOUNS = ["film", "plot", "cast", "ending", "script", "soundtrack", "story", "director"]
TEMPLATES = [
    "The {noun} was {word}.",
    "A {word} {noun}, and a {other} {noun2}.",
    "I found the {noun} {word}; the {noun2} was {other} too.",
    "What a {word} {noun}!",
    "Honestly {word}. The {noun} felt {other}.",
]


def reviews(rng: np.random.Generator, count: int = 400) -> list[dict[str, str]]:
    """``count`` reviews, half of each sentiment: two of its words, nouns and templates drawn at random."""
    out = []
    for i in range(count):
        positive = i % 2 == 0
        words = POSITIVE if positive else NEGATIVE
        text = str(rng.choice(TEMPLATES)).format(
            noun=rng.choice(NOUNS), noun2=rng.choice(NOUNS), word=rng.choice(words), other=rng.choice(words)
        )
        out.append({"text": text, "sentiment": "positive" if positive else "negative"})
    return out


if __name__ == "__main__":
    main()
