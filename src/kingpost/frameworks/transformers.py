"""Hugging Face ``transformers`` pipelines, saved with ``save_pretrained`` into ``data/pipeline``.

The directory holds the weights (safetensors), the config and the tokenizer or processor, so
serving needs no access to the Hub: config.yaml sets HF_HUB_OFFLINE=1. model.py rebuilds the
pipeline with the same task and the call options it was made with (``top_k=2``, ...).
"""

from __future__ import annotations

from typing import Any

from kingpost.errors import BundleError
from kingpost.frameworks._source import is_literal
from kingpost.frameworks._template import TO_JSONABLE, Artifact, Target

PIPELINE_INPUT = '''\
def pipeline_input(request):
    """(inputs, parameters) of {"inputs": ..., "parameters": {...}} (the Hugging Face format), or (request, {})."""
    if isinstance(request, dict) and "inputs" in request and set(request) <= {"inputs", "parameters"}:
        return request["inputs"], request.get("parameters") or {}
    return request, {}
'''

PREDICT = '''\
inputs, parameters = model_input
return self._model(inputs, **parameters)'''


def save(model: Any, target: Target) -> Artifact:
    from transformers import Pipeline

    if not isinstance(model, Pipeline):
        kind = type(model)
        raise BundleError(f"model: expected a transformers pipeline (transformers.pipeline(task, model=..., "
                          f"tokenizer=...)), found a {kind.__module__}.{kind.__qualname__}; wrap the model in one.")
    model.save_pretrained(target.data / "pipeline")
    options: dict[str, Any] = {}
    for name in ("_preprocess_params", "_forward_params", "_postprocess_params"):
        params = getattr(model, name, None) or {}
        options.update({k: v for k, v in params.items() if is_literal(v) and not k.startswith("_")})
    return Artifact(
        framework="transformers",
        format="save_pretrained",
        summary=f"A Hugging Face {model.task} pipeline ({type(model.model).__name__})",
        doc="data/pipeline holds the pipeline as save_pretrained wrote it: weights, config and tokenizer; "
            "HF_HUB_OFFLINE=1 (config.yaml) keeps serving off the Hub. A request is {\"inputs\": ..., "
            "\"parameters\": {...}} (Hugging Face's format) or just the inputs. The answer is what the pipeline "
            "returns.",
        imports=["import transformers"],
        constants={"TASK": model.task, "PIPELINE_OPTIONS": options},
        load='self._model = transformers.pipeline(TASK, model=str(self._data_dir / "pipeline"), **PIPELINE_OPTIONS)',
        preprocess="pipeline_input({x})",
        predict=PREDICT,
        helpers=[PIPELINE_INPUT, TO_JSONABLE],
        modules={"transformers", "tokenizers", "safetensors", "torch"},
        environment={"HF_HUB_OFFLINE": "1"},
    )
