"""A model's exception text reaches the logs with the bundle's secrets and credential shapes masked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hostile_http import PREDICT

from kingpost.server.redact import MASK, Redactor
from serving import Server

pytestmark = pytest.mark.timeout(60)


def test_secrets_in_a_models_exception_are_redacted_in_the_log(serve: Callable[..., Server],
                                                                copy_bundle: Callable[..., Path]) -> None:
    secret = "s3cr3t-value-4242"
    server = serve(copy_bundle("server_echo", secrets={"upstream_key": None}),
                   env={"KINGPOST_SECRET_upstream_key": secret})
    text = f"upstream refused key {secret}; retry with password=hunter22 and Authorization: Bearer abc.def.ghi"
    response = httpx.post(server.url + PREDICT, json={"raise": text}, timeout=10)
    assert response.status_code == 500
    assert secret not in response.text
    logged = server.wait_for_stderr(r"request .*: predict raised RuntimeError")[0]
    stderr = server.stderr()
    assert "Traceback" in stderr  # the traceback is still there, for the operator
    for leaked in (secret, "hunter22", "abc.def.ghi"):
        assert leaked not in stderr
    assert logged.count(MASK) == 3, logged


@pytest.mark.parametrize(("text", "expected"), [
    ("token=abcdef123", f"token={MASK}"),
    ("api_key: 'xyz987654'", f"api_key: '{MASK}'"),
    ("key sk-proj-ABCDEFGH12345678 rejected", f"key {MASK} rejected"),
    ("AWS AKIAABCDEFGHIJKLMNOP", f"AWS {MASK}"),
    ("nothing secret here: shape (3, 4)", "nothing secret here: shape (3, 4)"),
])
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    assert Redactor(["unrelated-secret"])(text) == expected


def test_a_secret_in_a_load_failure_is_redacted(serve: Callable[..., Server]) -> None:
    secret = "pw-9f8e7d6c5b"
    server = serve("load_leaks_secret", wait="bound", env={"KINGPOST_SECRET_db_password": secret})
    assert server.wait() == 1
    stderr = server.stderr()
    assert "error: the model failed to load:" in stderr and "refused the connection" in stderr
    assert secret not in stderr
    assert MASK in stderr
