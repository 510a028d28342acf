"""Train the digits classifier and save its weights as plain numpy arrays.

Run from anywhere:  python examples/digits/train.py   (needs scikit-learn and Pillow; ~10 s)

Writes data/mlp.npz, which model.py reads with numpy alone, so serving depends neither on the
scikit-learn version nor on pickle; and samples/*.png plus examples.yaml from the held-out split.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "data" / "mlp.npz"
SAMPLES = HERE / "samples"
EXAMPLES = HERE / "examples.yaml"
SEED = 0
TEST_SIZE = 0.25
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def held_out_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return X_train, X_test, y_train, y_test: 8x8 images flattened, values 0..16.

    The tests import this so they score the shipped weights on exactly the images training never saw.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    return train_test_split(digits.data, digits.target, test_size=TEST_SIZE, random_state=SEED, stratify=digits.target)


def sample_png(features: np.ndarray, *, size: int = 64, dark_on_light: bool = True) -> bytes:
    """One load_digits row (64 values, 0..16) as a PNG that looks like a scanned digit.

    Upscaled smoothly and, by default, dark ink on white paper: the opposite of what the model was
    trained on, so the bundle's preprocess has real work to do.
    """
    from PIL import Image

    ink = np.round(features.reshape(8, 8) * (255 / 16)).astype(np.uint8)
    pixels = 255 - ink if dark_on_light else ink
    image = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_samples(x_test: np.ndarray, y_test: np.ndarray) -> None:
    """samples/<name>.png: the first held-out image of each digit; examples.yaml: three of them."""
    SAMPLES.mkdir(exist_ok=True)
    first = {int(label): int(np.flatnonzero(y_test == label)[0]) for label in range(10)}
    for label, index in first.items():
        (SAMPLES / f"{NAMES[label]}.png").write_bytes(sample_png(x_test[index]))
    examples = [
        ("seven", sample_png(x_test[first[7]])),
        ("two", sample_png(x_test[first[2]])),
        ("four_light_on_dark", sample_png(x_test[first[4]], dark_on_light=False)),
    ]
    lines = ["# Held-out load_digits images as base64 PNGs (written by train.py).", ""]
    for name, png in examples:
        lines += [f"- name: {name}", "  input:", f'    image: "{base64.b64encode(png).decode()}"']
    EXAMPLES.write_text("\n".join(lines) + "\n")


def main() -> None:
    from sklearn.neural_network import MLPClassifier

    x_train, x_test, y_train, y_test = held_out_split()
    clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=500, random_state=SEED)
    clf.fit(x_train / 16.0, y_train)  # model.py feeds the network values scaled to 0..1
    accuracy = clf.score(x_test / 16.0, y_test)

    arrays: dict[str, np.ndarray] = {"classes": clf.classes_.astype(np.int64)}
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        arrays[f"w{i}"] = w.astype(np.float32)
        arrays[f"b{i}"] = b.astype(np.float32)
    WEIGHTS.parent.mkdir(exist_ok=True)
    np.savez_compressed(WEIGHTS, **arrays)
    write_samples(x_test, y_test)
    print(f"held-out accuracy {accuracy:.4f} on {len(y_test)} images; wrote {WEIGHTS}")


if __name__ == "__main__":
    main()
