"""A vectorized model, one request per predict: logits = x @ W, then 4 ms standing for the GPU.

W is a fixed 512x512 float32 matrix of small integers and the inputs are quarters, so every logit
is exact in float32 whatever the BLAS kernel or the batch size (bench/harness/cases.py computes the
expected answer in pure Python). bundles/matmul-batched is the same model with runtime.batching.

The 4 ms sleep is the per-call fixed cost of an accelerator (kernel launches, host-device copies,
synchronisation), during which the CPU is free and the GIL released; it barely grows with the
batch. A larger CPU matmul would instead burn the single core the HTTP server also needs.
"""

import time

import numpy as np

CALL_OVERHEAD_S = 0.004


def weights() -> np.ndarray:
    i = np.arange(512)[:, None]
    j = np.arange(512)[None, :]
    return ((i * j * 7919 + i * 31 + j * 17) % 4093 % 7 - 3).astype(np.float32)


class Model:
    def __init__(self, **kwargs):
        self._w = None

    def load(self):
        self._w = weights()

    def predict(self, model_input):
        x = np.asarray(model_input["inputs"], dtype=np.float32)  # shape (512,)
        logits = x @ self._w
        time.sleep(CALL_OVERHEAD_S)
        label = int(logits.argmax())
        return {"label": label, "score": float(logits[label])}
