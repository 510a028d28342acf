"""MLServer's side of the v2 case: the same echo as kingpost's bench/bundles/echo over V2.

kingpost decodes each input tensor to a numpy array, calls predict (which returns it) and encodes
the array back as output-0; this runtime does the same with MLServer's own NumpyCodec.
"""

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class Echo(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        array = NumpyCodec.decode_input(payload.inputs[0])
        output = NumpyCodec.encode_output("output-0", array)
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=[output])
