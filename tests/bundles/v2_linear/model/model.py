"""A linear model trained by the test (weights in data/weights.npy), served over V1 and V2 alike.

V1 sends {"features": [[...], ...]}; V2 sends one tensor, which arrives as the array itself.
Output: {"prediction": [...], "label": ["high" | "low", ...]} (label: prediction above 0).
"""

import numpy as np


class Model:
    def __init__(self, data_dir):
        self._path = data_dir / "weights.npy"
        self._weights = None

    def load(self):
        self._weights = np.load(self._path)

    def preprocess(self, model_input):
        features = model_input["features"] if isinstance(model_input, dict) else model_input
        return np.asarray(features, dtype=np.float64)

    def predict(self, features):
        return features @ self._weights[:-1] + self._weights[-1]

    def postprocess(self, prediction):
        return {"prediction": prediction, "label": ["high" if p > 0 else "low" for p in prediction]}
