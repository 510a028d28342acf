"""Needs text-unidecode, which the dev environment lacks: runs only in its isolated environment."""

import sys

from text_unidecode import unidecode


class Model:
    def predict(self, model_input):
        return {"ascii": unidecode(model_input), "python": list(sys.version_info[:2]), "prefix": sys.prefix}
