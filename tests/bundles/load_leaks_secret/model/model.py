"""load() fails with an exception whose text quotes a secret, as a careless connection string would."""


class Model:
    def __init__(self, secrets, **kwargs):
        self._password = secrets["db_password"]

    def load(self):
        raise ConnectionError(f"postgresql://model:{self._password}@db:5432/features refused the connection")

    def predict(self, model_input):
        return model_input
