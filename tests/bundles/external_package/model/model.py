"""Imports a package from external_package_dirs (relative to the bundle, here a sibling directory)."""

from kp_test_external import reverse


class Model:
    def predict(self, model_input):
        return reverse(model_input)
