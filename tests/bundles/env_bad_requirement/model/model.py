"""Requires a package no index has: its environment can never be built."""


class Model:
    def predict(self, model_input):
        return model_input
