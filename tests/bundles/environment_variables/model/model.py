"""Reads the config's environment_variables from os.environ (values arrive as strings)."""

import os


class Model:
    def predict(self, model_input):
        return {name: os.environ.get(name) for name in model_input}
