"""Requirements come from config.yaml or from requirements_file; error hints name the right one."""

from __future__ import annotations

from pathlib import Path

import pytest

import kingpost
from kingpost.config import load_config
from kingpost.errors import MissingRequirementError
from kingpost.requirements import requirement_import_name, requirement_lines, requirement_name

BUNDLES = Path(__file__).parent / "bundles"


def test_requirement_lines_read_a_requirements_file_without_comments() -> None:
    path = BUNDLES / "requirements_file_missing"
    assert requirement_lines(path, load_config(path)) == ["kingpost-test-absent-package==1.0"]


def test_names_in_requirement_lines() -> None:
    assert requirement_name("Scikit_Learn>=1.3; python_version > '3.9'") == "scikit-learn"
    assert requirement_import_name("scikit-learn==1.5") == "sklearn"
    assert requirement_import_name("xgboost-cpu") == "xgboost"
    assert requirement_import_name("python-slugify") == "python_slugify"


def test_a_missing_package_listed_in_requirements_file_is_named_with_that_file() -> None:
    bundle = kingpost.load(BUNDLES / "requirements_file_missing")
    with pytest.raises(MissingRequirementError) as caught:
        bundle.predict(1)
    assert str(caught.value) == (
        "requirements_file_missing/model/model.py: missing requirement: cannot import "
        "'kingpost_test_absent_package': the bundle requires 'kingpost-test-absent-package==1.0' "
        "(requirements.txt), which is not installed here; install it or run with --isolated."
    )
