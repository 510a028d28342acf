"""Model classes Truss refuses at load, refused by kingpost with one sentence (Truss's
test_truss_with_requests_and_invalid_signatures, _invalid_argument_combinations,
test_raise_predict_and_websocket_endpoint, test_raise_no_endpoint). Each class is a few lines, so
they are written here into a fresh bundle rather than kept as one directory each."""

from __future__ import annotations

import textwrap

import pytest
from compat_suite import kingpost_only, load_compat  # noqa: F401 - fixtures are found by name

from kingpost import ModelLoadError

pytestmark = kingpost_only  # in process: kingpost's own loader

REFUSED = {
    "second_not_request": ("def predict(self, inputs, invalid_arg): ...",
                           "its second must be the request"),
    "request_first": ("def predict(self, request: fastapi.Request, invalid_arg): ...",
                      "with the request first"),
    "three_arguments": ("def predict(self, inputs, request: fastapi.Request, something): ...",
                        "takes more than two arguments"),
    "request_only_after_preprocess": ("async def preprocess(self, inputs): ...\n"
                                      "def predict(self, request: fastapi.Request): ...",
                                      "the output of preprocess would be dropped"),
    "postprocess_request_only": ("def preprocess(self, inputs): ...\n"
                                 "async def predict(self, inputs, request: fastapi.Request): ...\n"
                                 "def postprocess(self, request: fastapi.Request): ...",
                                 "the output of predict would be dropped"),
    "no_predict": ("def preprocess(self, inputs): ...", "has no predict method"),
    "websocket_and_predict": ("async def websocket(self, websocket): ...\nasync def predict(self, inputs): ...",
                              "cannot have both websocket and predict"),
    "websocket_and_preprocess": ("async def websocket(self, websocket): ...\n"
                                 "async def preprocess(self, inputs): ...",
                                 "cannot have both websocket and preprocess"),
    "sync_websocket": ("def websocket(self, websocket): ...", "must be an async def"),
    "is_healthy_with_argument": ("def is_healthy(self, x): ...\ndef predict(self, inputs): ...",
                                 "is_healthy must take no argument"),
    "response_annotation_and_postprocess": ("def predict(self, inputs) -> fastapi.Response: ...\n"
                                            "def postprocess(self, outputs): ...",
                                            "returns a response object, so it cannot have a postprocess"),
}


def write(tmp_path, name: str, body: str):
    bundle = tmp_path / name
    (bundle / "model").mkdir(parents=True)
    (bundle / "config.yaml").write_text(f"model_name: {name}\n")
    (bundle / "model" / "model.py").write_text(
        "import fastapi\n\n\nclass Model:\n" + textwrap.indent(body, "    ") + "\n")
    return bundle


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_at_load_with_one_sentence(tmp_path, load_compat, name):
    body, expected = REFUSED[name]
    bundle = load_compat(write(tmp_path, name, body))
    with pytest.raises(ModelLoadError) as info:
        bundle.load_model()
    message = str(info.value)
    assert expected in message, message
    assert message.startswith(f"{name}/model/model.py: ") and "\n" not in message


def test_refused_by_check_before_anything_runs(tmp_path):
    from kingpost.check import check

    report = check(write(tmp_path, "request_first", REFUSED["request_first"][0]))
    assert report.error is not None and "with the request first" in str(report.error)


def test_accepted_shapes(tmp_path, load_compat):
    body = ("def predict(self):\n    return 'no arguments'\n")
    assert load_compat(write(tmp_path, "no_args", body)).predict({"ignored": 1}) == "no arguments"
