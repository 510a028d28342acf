"""setup_environment before load, the environment kwarg, the full config kwarg, data_dir."""
from pathlib import Path


class Model:
    def __init__(self, config, data_dir, environment):
        self._seen = {
            "init_environment": environment,
            "live_reload": config["live_reload"],
            "predict_concurrency": config["runtime"]["predict_concurrency"],
            "streaming_read_timeout": config["runtime"]["streaming_read_timeout"],
            "memory": config["resources"]["memory"],
            "model_name": config["model_name"],
            "data_dir_absolute": Path(data_dir).is_absolute(),
            "data_dir_exists": Path(data_dir).is_dir(),
        }
        self._calls = []

    def setup_environment(self, environment):
        self._calls.append(environment)

    def load(self):
        self._seen["environment_at_load"] = self._calls[-1] if self._calls else None

    def predict(self, model_input):
        return {**self._seen, "setup_calls": self._calls}
