"""kingpost.create with a transformers pipeline: save_pretrained into data/, served with the Hub off.

The pipeline is a tiny BERT made here from a config and a vocabulary written by the test:
nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import kingpost
from creating import assert_close, predict_fresh, predict_http, ruff_clean, started_server
from serving import Server

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "great", "awful", "the", "a"]
TEXTS = ["good movie", "the awful movie", "a great great movie", "bad"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    root = tmp_path_factory.mktemp("transformers")
    (root / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32, num_labels=2,
                                     initializer_range=0.5, id2label={0: "negative", 1: "positive"},
                                     label2id={"negative": 0, "positive": 1})
    model = transformers.BertForSequenceClassification(config).eval()
    classify = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)
    kingpost.create(classify, root / "sentiment", example_input={"inputs": TEXTS[:2]})
    return root / "sentiment", classify(TEXTS), classify(TEXTS[0])


@pytest.fixture(scope="module")
def server(bundle: tuple[Path, Any, Any]) -> Iterator[Server]:
    with started_server(bundle[0]) as server:
        yield server


def test_fresh_interpreter_answers_as_in_memory(bundle: tuple[Path, Any, Any], server: Server, tmp_path: Path) -> None:
    path, expected, expected_one = bundle
    [output, one] = predict_fresh([(path, {"inputs": TEXTS}), (path, TEXTS[0])], tmp_path)
    assert_close(output, expected)
    assert_close(one, expected_one)
    ruff_clean(path)


def test_http_answers_as_in_memory(bundle: tuple[Path, Any, Any], server: Server) -> None:
    assert_close(predict_http(server, {"inputs": TEXTS, "parameters": {}}), bundle[1])


def test_saved_for_offline_serving(bundle: tuple[Path, Any, Any]) -> None:
    path, _, _ = bundle
    config = yaml.safe_load((path / "config.yaml").read_text())
    assert config["environment_variables"] == {"HF_HUB_OFFLINE": "1"}
    assert {r.split("==")[0] for r in config["requirements"]} >= {"transformers", "torch", "tokenizers"}
    saved = {p.name for p in (path / "data" / "pipeline").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= saved
    source = (path / "model" / "model.py").read_text()
    assert "TASK = 'text-classification'" in source and "PIPELINE_OPTIONS = {'top_k': None}" in source


def test_a_bare_model_is_refused(tmp_path: Path) -> None:
    config = transformers.BertConfig(vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                     intermediate_size=8)
    with pytest.raises(kingpost.BundleError, match="expected a transformers pipeline"):
        kingpost.create(transformers.BertModel(config), tmp_path / "bare")
