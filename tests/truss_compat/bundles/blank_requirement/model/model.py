class Model:
    def predict(self, x):
        return x
