"""Imports a package shipped in the bundle's packages/ directory."""

from kp_test_bundled import shout


class Model:
    def predict(self, model_input):
        return shout(model_input)
