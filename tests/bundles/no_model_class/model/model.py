"""The class has another name than config.yaml's model_class_name (Model)."""


class Predictor:
    def predict(self, model_input):
        return model_input
