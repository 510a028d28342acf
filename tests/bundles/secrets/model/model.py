"""Returns the secrets it can see, by name (a test bundle: never do this with real secrets)."""


class Model:
    def __init__(self, secrets):
        self._secrets = secrets

    def predict(self, model_input):
        return {name: self._secrets[name] for name in model_input}
