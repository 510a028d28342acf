"""The bench cases as LitServe APIs: `python litserve_app.py --case echo --host H --port P`.

Runs in its own venv (bench/.venvs/litserve). Each API mirrors its Truss bundle under
bench/bundles/<case>/ so that every server does the same work per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# As bundles/matmul's config.yaml: one BLAS thread (set before numpy is imported).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import litserve as ls  # noqa: E402


class EchoAPI(ls.LitAPI):
    """LitServe's default (synchronous) loop: decode, predict and encode run in one worker."""

    def setup(self, device):
        pass

    def decode_request(self, request):
        return request

    def predict(self, x):
        return x

    def encode_response(self, output):
        return output


class PipelineAPI(ls.LitAPI):
    """20 ms of blocking preprocess on a thread pool, then 5 ms of blocking predict under a lock.

    LitServe's default loop runs decode_request and predict back to back in one worker process,
    which would cap this case at 1 / 25 ms = 40 req/s. With enable_async=True (set in main) each
    request is an asyncio task, so the 20 ms preprocess of many requests overlap while predict
    keeps to one at a time: the same semantics as a Truss bundle with predict_concurrency 1.
    The pool is 40 threads, as large as Truss's.
    """

    def setup(self, device):
        self._pool = ThreadPoolExecutor(max_workers=40, thread_name_prefix="pre")
        self._predict_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._lock: asyncio.Lock | None = None

    async def decode_request(self, request):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _sleep_then_return, 0.02, request)

    async def predict(self, x):
        if self._lock is None:  # created on the worker's event loop
            self._lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        async with self._lock:
            return await loop.run_in_executor(self._predict_pool, _sleep_then_return, 0.005, x)

    async def encode_response(self, output):
        return output


class PipelineSyncAPI(EchoAPI):
    """The pipeline case written the plain LitServe way (no enable_async): serial per worker."""

    _lock = threading.Lock()

    def decode_request(self, request):
        time.sleep(0.02)
        return request

    def predict(self, x):
        with self._lock:
            time.sleep(0.005)
        return x


def _matmul_weights():
    """The W of bundles/matmul (see its model.py): 512x512 float32 of small integers."""
    import numpy as np

    i = np.arange(512)[:, None]
    j = np.arange(512)[None, :]
    return ((i * j * 7919 + i * 31 + j * 17) % 4093 % 7 - 3).astype(np.float32)


class MatmulAPI(ls.LitAPI):
    """bundles/matmul: x @ W, then 4 ms standing for an accelerator's fixed cost per call.

    LitServe's default loop: decode_request, predict and encode_response in one inference worker.
    """

    def setup(self, device):
        self._w = _matmul_weights()

    def decode_request(self, request):
        import numpy as np

        return np.asarray(request["inputs"], dtype=np.float32)  # shape (512,)

    def predict(self, x):
        logits = x @ self._w
        time.sleep(0.004)
        return logits

    def encode_response(self, output):
        label = int(output.argmax())
        return {"label": label, "score": float(output[label])}


class MatmulBatchedAPI(MatmulAPI):
    """bundles/matmul-batched the LitServe way: LitAPI(max_batch_size=32, batch_timeout=0.005) (set
    in APIS); batch() stacks the decoded rows, predict runs once per batch, unbatch() splits it."""

    def batch(self, inputs):
        import numpy as np

        return np.stack(inputs)  # (batch, 512)

    def unbatch(self, output):
        return list(output)


class StreamAPI(ls.LitAPI):
    """The stream case: predict yields n short text chunks, encode_response passes each one on
    (LitAPI(stream=True), LitServe's documented streaming; the client gets them chunked)."""

    def setup(self, device):
        pass

    def decode_request(self, request):
        return request["n"]

    def predict(self, n):
        for i in range(n):
            yield f"tok{i:05d} "

    def encode_response(self, output):
        yield from output


def _sleep_then_return(seconds, value):
    time.sleep(seconds)
    return value


# case name -> (LitAPI class, LitAPI keyword arguments)
APIS = {
    "echo": (EchoAPI, {}),
    "pipeline": (PipelineAPI, {"enable_async": True}),
    "pipeline-sync": (PipelineSyncAPI, {}),
    "stream": (StreamAPI, {"stream": True}),
    "matmul": (MatmulAPI, {}),
    # LitServer(api, max_batch_size=..., batch_timeout=...) is deprecated since 0.2.x: on the LitAPI.
    "matmul-batched": (MatmulBatchedAPI, {"max_batch_size": 32, "batch_timeout": 0.005}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", required=True, choices=sorted(APIS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers-per-device", type=int, default=1)
    parser.add_argument("--fast-queue", action="store_true", help="ZeroMQ between the processes")
    args = parser.parse_args()

    api_class, api_kwargs = APIS[args.case]
    server = ls.LitServer(
        api_class(api_path="/predict", **api_kwargs),
        accelerator="cpu",
        workers_per_device=args.workers_per_device,
        timeout=60,
        fast_queue=args.fast_queue,
    )
    # log_level "warning" (LitServe's documented production setting) turns off uvicorn's
    # per-request access log; num_api_servers defaults to one per inference worker.
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
