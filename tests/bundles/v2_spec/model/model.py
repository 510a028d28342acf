"""The specification's example model: input0 UINT32 [2, 2] and input1 BOOL [3] in (a dict of arrays).

output0 is FP32 [3, 2], rows [k, k + 0.1] for k = 1, 2, 3, scaled by sum(input0) / 10 (so the
spec's input 1, 2, 3, 4 gives the spec's answer 1.0, 1.1, 2.0, 2.1, 3.0, 3.1); output1 is not input1.
"""

import numpy as np


class Model:
    def predict(self, model_input):
        input0, input1 = model_input["input0"], model_input["input1"]
        assert input0.dtype == np.uint32 and input1.dtype == np.bool_, (input0.dtype, input1.dtype)
        k = np.arange(1, 4, dtype=np.float64)
        output0 = (np.stack([k, k + 0.1], axis=1) * (int(input0.sum()) / 10)).astype(np.float32)
        return {"output0": output0, "output1": ~input1}
