"""Imports a package that the config requires but this environment lacks."""

import kingpost_test_not_installed


class Model:
    def predict(self, model_input):
        return kingpost_test_not_installed.run(model_input)
