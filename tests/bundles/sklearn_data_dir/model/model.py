"""Loads a pickled scikit-learn estimator from data_dir (tests write data/model.pkl into a copy)."""

import pickle


class Model:
    def __init__(self, **kwargs):
        self._data_dir = kwargs["data_dir"]
        self._model = None

    def load(self):
        with open(self._data_dir / "model.pkl", "rb") as f:
            self._model = pickle.load(f)

    def predict(self, model_input):
        return self._model.predict(model_input["inputs"]).tolist()
