"""Streaming text: a word-level bigram model over one paragraph of Moby-Dick, yielded token by token.

    in   {"prompt": "Call me", "max_tokens": 40, "seed": 0}
    out  " Ishmael", ".", " Some", " years", ...   (strings, streamed as they are made)

``predict`` is a generator, so kingpost streams each token to the caller as soon as it exists, and
holds the predict slot until the generator ends. The same seed gives the same text. There is no
``postprocess``: it would need the whole output, which defeats streaming (kingpost refuses the
combination at load time).
"""

from __future__ import annotations

import random
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kingpost import InputError

TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")  # words (people's stays whole) and punctuation marks
NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", "—"}
MAX_TOKENS = 200
FIELDS = ("prompt", "max_tokens", "seed")


class Model:
    def __init__(self, config: dict[str, Any], data_dir: Path, **kwargs: Any) -> None:
        self._corpus_path = Path(data_dir) / "corpus.txt"
        # Stands in for a language model's per-token compute, so `curl -N` shows the stream arrive.
        self._delay = float((config.get("model_metadata") or {}).get("token_delay_s", 0.0))

    def load(self) -> None:
        tokens = TOKEN.findall(self._corpus_path.read_text(encoding="utf-8"))
        self._next: dict[str, list[str]] = defaultdict(list)
        for current, following in zip(tokens, tokens[1:] + tokens[:1], strict=True):  # wraps: no dead ends
            self._next[current].append(following)  # repeats keep the corpus's frequencies
        self._by_lower = {token.lower(): token for token in tokens}

    def preprocess(self, model_input: Any) -> dict[str, Any]:
        if not isinstance(model_input, dict) or not isinstance(model_input.get("prompt"), str):
            raise InputError('Send {"prompt": "<text>", "max_tokens": <1..200>, "seed": <integer>}.')
        unknown = sorted(set(model_input) - set(FIELDS))
        if unknown:
            raise InputError(f"Unknown fields {', '.join(map(repr, unknown))}; expected {', '.join(FIELDS)}.")
        max_tokens = model_input.get("max_tokens", 40)
        if not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS:
            raise InputError(f'"max_tokens" must be an integer from 1 to {MAX_TOKENS}, got {max_tokens!r}.')
        seed = model_input.get("seed")
        if seed is not None and not _is_int(seed):
            raise InputError(f'"seed" must be an integer or null, got {seed!r}.')
        words = TOKEN.findall(model_input["prompt"])
        last = self._by_lower.get(words[-1].lower()) if words else None
        return {"last": last, "max_tokens": max_tokens, "seed": seed}

    def predict(self, request: dict[str, Any]) -> Iterator[str]:
        rng = random.Random(request["seed"])
        # Continue from the prompt's last word when the corpus knows it, else start a sentence.
        current = request["last"] or "."
        previous = current
        for _ in range(request["max_tokens"]):
            current = rng.choice(self._next[current])
            yield current if current in NO_SPACE_BEFORE or previous == "—" else " " + current
            previous = current
            if self._delay:
                time.sleep(self._delay)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
