"""Imports from its own ``model`` package inside hooks, and pickles a class from it, as Truss allows."""

import pickle


class Model:
    def load(self):
        from model.helpers import Scaler

        self._scaler = pickle.loads(pickle.dumps(Scaler(3)))  # pickled by name: model.helpers.Scaler

    def predict(self, model_input):
        from model import helpers

        return helpers.OFFSET + self._scaler.apply(model_input)
