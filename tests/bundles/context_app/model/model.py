"""Needs its requirement (idna), its environment variable and a run-time secret: what an image must provide."""

import os

import idna


class Model:
    def __init__(self, secrets):
        self._secrets = secrets

    def predict(self, model_input):
        return {
            "ascii": idna.encode(model_input["host"]).decode(),
            "greeting": os.environ.get("KP_CONTEXT_GREETING"),
            "api_key_set": self._secrets["api_key"] is not None,
        }
