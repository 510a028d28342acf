"""kingpost.create with PyTorch: torch.export with an example; state dict + class source without one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import kingpost
from creating import (
    Cases,
    assert_fresh_matches,
    assert_http_matches,
    started_server,
)
from serving import Server

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
nn = torch.nn

torch.manual_seed(0)
ROWS = torch.randn(5, 4)
HIDDEN_ACTIVATION = "relu"


class MLP(nn.Module):
    """Two layers; its constructor arguments are kept as attributes, so it can be rebuilt from source."""

    def __init__(self, features: int, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.features, self.hidden, self.classes = features, hidden, classes
        self.layers = nn.Sequential(nn.Linear(features, hidden), Activation(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layers(x), dim=-1)


class Activation(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if HIDDEN_ACTIVATION == "relu" else torch.tanh(x)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 2), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x) + self.b(y), self.b(y)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    root = tmp_path_factory.mktemp("torch")
    mlp = MLP(4, hidden=8).eval()
    kingpost.create(mlp, root / "exported", example_input=ROWS[:1].numpy())
    kingpost.create(mlp, root / "state_dict")
    two = TwoInputs().eval()
    y = torch.randn(5, 3)
    kingpost.create(two, root / "two_inputs", example_input=(ROWS, y))
    kingpost.create(mlp, root / "hooks", example_input={"pixels": ROWS[:2].tolist()},
                    preprocess=lambda request: torch.tensor(request["pixels"]) * 2,
                    postprocess=lambda out: {"best": out["predictions"].argmax(dim=-1)})
    with torch.inference_mode():
        return {
            "exported": (root / "exported", {"inputs": ROWS.tolist()}, {"predictions": mlp(ROWS)}),
            "state_dict": (root / "state_dict", ROWS.tolist(), {"predictions": mlp(ROWS)}),
            "two_inputs": (root / "two_inputs", {"inputs": [ROWS.tolist(), y.tolist()]},
                           {"predictions": list(two(ROWS, y))}),
            "hooks": (root / "hooks", {"pixels": ROWS.tolist()}, {"best": mlp(ROWS * 2).argmax(dim=-1)}),
        }


@pytest.fixture(scope="module")
def server(cases: Cases) -> Iterator[Server]:
    with started_server(cases["exported"][0]) as server:
        yield server


def test_fresh_interpreter_answers_as_in_memory(cases: Cases, server: Server, tmp_path: Path) -> None:
    assert_fresh_matches(cases, tmp_path)


def test_http_answers_as_in_memory(cases: Cases, server: Server) -> None:
    assert_http_matches(server, cases["exported"])


def test_formats(cases: Cases) -> None:
    exported = cases["exported"][0]
    assert (exported / "data" / "model.pt2").is_file()
    assert not any((exported / "packages").iterdir())
    assert yaml.safe_load((exported / "config.yaml").read_text())["model_metadata"]["format"] == "torch.export"
    state = cases["state_dict"][0]
    assert (state / "data" / "model.pt").is_file()
    source = (state / "packages" / "mlp_module.py").read_text()
    assert "class MLP(nn.Module):" in source and "class Activation(nn.Module):" in source
    assert "HIDDEN_ACTIVATION = 'relu'" in source
    assert "MODEL_KWARGS = {'features': 4, 'hidden': 8}" in (state / "model" / "model.py").read_text()


def test_unrebuildable_model_without_example_is_refused(tmp_path: Path) -> None:
    class Opaque(nn.Module):
        def __init__(self, size: int) -> None:
            super().__init__()
            self.layer = nn.Linear(size, 1)

    with pytest.raises(kingpost.BundleError, match=r"'size'.*example_input"):
        kingpost.create(Opaque(3), tmp_path / "opaque")
    assert not (tmp_path / "opaque").exists()
