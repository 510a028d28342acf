"""A predict that returns a generator (rather than being one) streams, as under Truss."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import kingpost
from kingpost.errors import ModelError

BUNDLES = Path(__file__).parent / "bundles"


def test_a_returned_generator_streams_in_process() -> None:
    bundle = kingpost.load(BUNDLES / "returned_generator")
    try:
        chunks = bundle.predict({"text": "one two three"})
        assert isinstance(chunks, Iterator)
        assert list(chunks) == ["one ", "two ", "three "]
        # The same predict may also answer plainly: streaming is decided by what it returns.
        assert bundle.predict({"text": "one two", "stream": False}) == {"words": 2}
    finally:
        bundle.close()


def test_a_returned_generator_streams_over_http(serve) -> None:  # type: ignore[no-untyped-def]
    import httpx

    server = serve("returned_generator")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/v1/models/model:predict", json={"text": "a b c"})
        assert response.status_code == 200
        assert response.content == b"a b c "
        gathered = client.post("/v1/models/model:predict", json={"text": "a b"},
                               headers={"accept": "application/json"})
        assert gathered.json() == "a b "


def test_a_returned_generator_with_a_postprocess_is_a_clear_error_per_request() -> None:
    bundle = kingpost.load(BUNDLES / "returned_generator_postprocess")
    try:
        with pytest.raises(ModelError, match="streaming predict cannot have a postprocess"):
            bundle.predict("abc")
    finally:
        bundle.close()
