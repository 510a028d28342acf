"""A Response from predict next to a postprocess (Truss's test_truss_forbid_postprocessing_with_response)."""
import json

import fastapi


class Model:
    def predict(self, inputs):
        return fastapi.Response(content=json.dumps(inputs), status_code=200)

    def postprocess(self, inputs):
        return inputs
