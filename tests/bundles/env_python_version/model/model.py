"""Answers with the interpreter it runs on, to show python_version picks it."""

import sys


class Model:
    def predict(self, model_input):
        return {"python": list(sys.version_info[:2]), "prefix": sys.prefix}
