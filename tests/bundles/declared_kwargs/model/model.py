"""__init__ names two of the four keyword arguments; it gets exactly those."""


class Model:
    def __init__(self, config, data_dir):
        self._flavour = config["model_metadata"]["flavour"]
        self._data_dir = data_dir

    def predict(self, model_input):
        return {"flavour": self._flavour, "data_dir": str(self._data_dir)}
