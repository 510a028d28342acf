"""A StreamingResponse returned by predict keeps the predict slot until its body has been sent, or
its client has left (Truss's model_wrapper defers its semaphore's release to the response's end)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from compat_suite import kingpost_only, load_compat, served  # noqa: F401 - fixtures are found by name

PREDICT = "/v1/models/model:predict"
BUNDLES = ["streaming_response_slot", "streaming_response_slot_plain", "streaming_response_slot_async"]
"""Sync predict annotated `-> StreamingResponse` (decided at load), sync and async plain predicts."""


def _stream(url: str, body: dict[str, float], lines: list[str], ends: list[float]) -> None:
    with httpx.stream("POST", url + PREDICT, json=body, timeout=30) as r:
        assert r.status_code == 200
        lines.extend(r.iter_lines())
    ends.append(time.time())


def _two_at_once(url: str) -> tuple[list[str], list[str], float]:
    first: list[str] = []
    second: list[str] = []
    ends: list[float] = []
    a = threading.Thread(target=_stream, args=(url, {"chunks": 6, "delay": 0.1}, first, ends))
    a.start()
    time.sleep(0.15)  # the first predict has returned its response and the stream is under way
    b = threading.Thread(target=_stream, args=(url, {"chunks": 1, "delay": 0}, second, []))
    b.start()
    a.join(30)
    b.join(30)
    return first, second, ends[0]


def _started(line: str) -> tuple[int, float]:
    words = line.split()  # "predict N saw R streams running at T"
    return int(words[3]), float(words[-1])


@pytest.mark.parametrize("bundle", BUNDLES)
def test_second_predict_waits_for_the_first_stream(served, bundle):
    server = served(bundle)
    # The plain bundle's first stream takes a slot again once its predict has returned (kingpost
    # learns then that this predict returns responses); the second pair keeps predict's own slot.
    for _ in range(2):
        first, second, first_end = _two_at_once(server.url)
        assert first[1:] == [f"chunk {i}" for i in range(6)]
        running, started = _started(second[0])
        assert running == 0, second
        assert started >= first_end - 0.05, (started, first_end)  # not before the first body was all sent


@pytest.mark.parametrize("bundle", BUNDLES)
def test_client_leaving_mid_stream_frees_the_slot(served, bundle):
    server = served(bundle)
    with httpx.stream("POST", server.url + PREDICT, json={"chunks": 50, "delay": 0.1}, timeout=30) as r:
        assert next(r.iter_lines()).startswith("predict")
    left = time.time()  # the client closed the connection with ~5 s of stream still to come
    r2 = httpx.post(server.url + PREDICT, json={"chunks": 0}, timeout=30)
    assert r2.status_code == 200
    _, started = _started(r2.text.splitlines()[0])
    assert started - left < 2.0, started - left  # the slot was freed when the client left, not at the end


@kingpost_only
@pytest.mark.parametrize("bundle", BUNDLES)
def test_in_process_a_returned_streaming_response_keeps_no_slot(load_compat, bundle):
    model = load_compat(bundle)
    kept = [model.predict({"chunks": 1})]  # its body is never read, and the response stays alive
    done = threading.Event()

    def second() -> None:
        kept.append(model.predict({"chunks": 1}))
        done.set()
    threading.Thread(target=second, daemon=True).start()
    assert done.wait(10), "the second predict waited for the first response, which no server sends"
    assert type(kept[1]).__name__ == "StreamingResponse"
