"""A model as Truss users write it: everything comes through **kwargs."""

from model.helpers import greet


class Model:
    def __init__(self, **kwargs):
        self._config = kwargs["config"]
        self._data_dir = kwargs["data_dir"]
        self._secrets = kwargs["secrets"]
        self._salutation = None

    def load(self):
        self._salutation = (self._data_dir / "salutation.txt").read_text().strip()

    def predict(self, model_input):
        return {
            "greeting": greet(self._salutation, model_input["name"]),
            "model_name": self._config["model_name"],
            "token": self._secrets["token"],
        }
