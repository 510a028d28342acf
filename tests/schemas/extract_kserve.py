"""Extract KServe's v1beta1 API field types from the ``kserve`` wheel on PyPI into kserve-v1beta1.json.

KServe publishes its InferenceService CRD (with its OpenAPI schema) only in its GitHub repository
and release assets, which cannot be fetched here; no PyPI or npm package ships the CRD. The
``kserve`` Python SDK on PyPI is generated from the same OpenAPI definitions: each model class
under ``kserve/models/`` lists its fields (``attribute_map``: Python name -> JSON name) and their
types (``openapi_types``). This script reads those two literals from the wheel without importing
it and writes them out; ``tests/test_k8s.py`` checks a generated InferenceService against them,
and the Kubernetes types they name (``V1Container``, ...) against kubernetes-validate's schemas.

    python -m pip download kserve==0.21.0 --no-deps -d /tmp/kserve
    python tests/schemas/extract_kserve.py /tmp/kserve/kserve-0.21.0-py3-none-any.whl
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path


def extract(wheel: Path) -> dict[str, object]:
    models: dict[str, dict[str, list[str]]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not (name.startswith("kserve/models/v1beta1_") and name.endswith(".py")):
                continue
            tree = ast.parse(archive.read(name))
            for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
                found: dict[str, dict[str, str]] = {}
                for stmt in cls.body:
                    if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name) \
                            and stmt.targets[0].id in ("openapi_types", "attribute_map"):
                        found[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                if len(found) == 2:
                    types, names = found["openapi_types"], found["attribute_map"]
                    models[cls.name] = {names[k]: types[k] for k in types}  # type: ignore[dict-item]
    return {"source": f"{wheel.name} (sha256 {hashlib.sha256(wheel.read_bytes()).hexdigest()})",
            "models": models}


if __name__ == "__main__":
    out = Path(__file__).with_name("kserve-v1beta1.json")
    out.write_text(json.dumps(extract(Path(sys.argv[1])), indent=1, sort_keys=True) + "\n")
