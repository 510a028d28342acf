import kingpost_test_absent_package  # noqa: F401 - listed in requirements.txt, not installed


class Model:
    def predict(self, model_input):
        return model_input
