"""Streams {"chunks": n} chunks, 0.5 s apart; the first names the GPUs Ray assigned this replica."""

import json
import os
import time


class Model:
    def __init__(self, **kwargs):
        pass

    def predict(self, model_input):
        yield json.dumps({"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\n"
        for i in range(int(model_input["chunks"])):
            time.sleep(0.5)
            yield f"chunk {i}\n"
