"""Handwritten digits: the model wants 64 numbers from 0 to 16; callers send pictures.

The classifier (a small MLP trained on scikit-learn's ``load_digits``, see ``train.py``) only
understands an 8x8 grid of light-on-dark ink values in the range 0..16. A person sends a URL or a
base64 PNG of a dark digit on white paper, in colour, with transparency, at any size. Everything
between the two is this file:

    preprocess   URL or base64 -> bytes -> Pillow image -> grey, ink-light, cropped, 8x8, 0..16
    predict      numpy forward pass over the weights in data/mlp.npz (no scikit-learn needed)
    postprocess  softmax probabilities -> {"7": 97.1, "1": 1.9, "9": 0.4}

``preprocess`` runs outside the predict lock, so a slow download never holds up other requests.
Anything wrong with the input raises ``kingpost.InputError`` with one sentence: the caller gets a
400 with that sentence, not a 500.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kingpost import InputError

# Overridable in config.yaml under model_metadata.
DEFAULTS: dict[str, Any] = {
    "fetch_timeout_s": 5.0,  # whole download, not per read
    "max_image_bytes": 2_000_000,
    "max_image_pixels": 4096 * 4096,
}
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")  # never the exotic decoders (EPS, ...) for strangers' bytes
USAGE = (
    'Send a JSON object with exactly one of "url" (an http or https address of an image) '
    'or "image" (a base64-encoded PNG or JPEG).'
)


class Model:
    def __init__(self, config: dict[str, Any], data_dir: Path, **kwargs: Any) -> None:
        settings = {**DEFAULTS, **(config.get("model_metadata") or {})}
        self._timeout = float(settings["fetch_timeout_s"])
        self._max_bytes = int(settings["max_image_bytes"])
        self._max_pixels = int(settings["max_image_pixels"])
        self._weights_path = Path(data_dir) / "mlp.npz"
        # Only http(s) and redirects between them: no file://, ftp:// or data: from a caller's URL.
        self._opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.HTTPHandler(),
            urllib.request.HTTPSHandler(),
            urllib.request.HTTPRedirectHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
        ):
            self._opener.add_handler(handler)

    def load(self) -> None:
        with np.load(self._weights_path, allow_pickle=False) as npz:
            self._classes = npz["classes"]
            n_layers = sum(1 for name in npz.files if name.startswith("w"))
            self._layers = [(npz[f"w{i}"], npz[f"b{i}"]) for i in range(n_layers)]

    # -- preprocess: whatever the caller sent -> 64 floats in 0..16 ------------------------------

    def preprocess(self, model_input: Any) -> np.ndarray:
        if not isinstance(model_input, dict) or len({"url", "image"} & model_input.keys()) != 1:
            raise InputError(USAGE)
        if "url" in model_input:
            raw, source = self._fetch(model_input["url"])
        else:
            raw, source = self._decode_base64(model_input["image"]), 'The "image" data'
        return to_features(self._open_image(raw, source))

    def _fetch(self, url: Any) -> tuple[bytes, str]:
        """Download at most max_image_bytes within fetch_timeout_s; return the bytes and a label."""
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f'"url" must be an http or https address, got {_short(url)}.')
        request = urllib.request.Request(url, headers={"User-Agent": "kingpost-digits-example"})
        url = url if len(url) <= 100 else url[:97] + "..."  # as shown in error sentences
        deadline = time.monotonic() + self._timeout
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self._max_bytes:
                    raise InputError(self._too_large(f"The image at {url}"))
                chunks, size = [], 0
                while chunk := response.read1(65536):  # read1: one recv, so the deadline holds
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise InputError(self._too_large(f"The image at {url}"))
                    if time.monotonic() > deadline:
                        raise InputError(f"Fetching {url} took longer than {self._timeout:g} s.")
                    chunks.append(chunk)
                content_type = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the error response open
            raise InputError(f"Fetching {url} failed with HTTP {exc.code} {exc.reason}.") from exc
        except urllib.error.URLError as exc:
            raise InputError(f"Could not fetch {url}: {_reason(exc.reason)}.") from exc
        except (OSError, ValueError) as exc:  # timeouts, resets, malformed responses
            raise InputError(f"Could not fetch {url}: {_reason(exc)}.") from exc
        return b"".join(chunks), f"The response from {url} ({content_type})"

    def _decode_base64(self, data: Any) -> bytes:
        if not isinstance(data, str):
            raise InputError(f'"image" must be a base64 string, got {type(data).__name__}.')
        if data.startswith("data:") and "," in data:  # accept data URLs as browsers produce them
            data = data.split(",", 1)[1]
        limit = (self._max_bytes + 2) // 3 * 4  # base64 characters for max_image_bytes
        if len(data) > 2 * limit:  # plainly too large: do not even copy it
            raise InputError(self._too_large('The "image"'))
        data = "".join(data.split())  # `base64` wraps lines at 76 characters
        if len(data) > limit:
            raise InputError(self._too_large('The "image"'))
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError('"image" is not valid base64.') from exc

    def _open_image(self, raw: bytes, source: str) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(raw), formats=FORMATS)
            width, height = image.size
            if width * height > self._max_pixels:
                raise InputError(f"The image is {width}x{height} pixels; the limit is {self._max_pixels} pixels.")
            image.load()
        except UnidentifiedImageError as exc:
            raise InputError(f"{source} is not a PNG, JPEG, GIF, BMP or WebP image.") from exc
        except Image.DecompressionBombError as exc:  # Pillow's own, far higher, pixel limit
            raise InputError(f"The image has more than the {self._max_pixels} pixel limit.") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{source} could not be decoded as an image: {_reason(exc)}.") from exc
        return image

    def _too_large(self, what: str) -> str:
        return f"{what} is larger than the {self._max_bytes} byte limit."

    # -- predict: the only part that touches the model --------------------------------------------

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Softmax probabilities, one per class, for one image (64,) or a batch (n, 64)."""
        hidden = np.asarray(features, dtype=np.float32) / 16.0  # trained on values scaled to 0..1
        *inner, (w_out, b_out) = self._layers
        for weights, bias in inner:
            hidden = np.maximum(hidden @ weights + bias, 0.0)  # ReLU, sklearn's default
        logits = hidden @ w_out + b_out
        logits -= logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=-1, keepdims=True)

    # -- postprocess: probabilities -> what a person wants to read --------------------------------

    def postprocess(self, probabilities: np.ndarray) -> dict[str, float]:
        top = np.argsort(probabilities)[::-1][:3]
        return {str(self._classes[i]): round(float(probabilities[i]) * 100, 1) for i in top}


def to_features(image: Image.Image) -> np.ndarray:
    """Any picture of one digit -> the 64 values load_digits would have for it.

    load_digits images are light ink on a dark background, the digit filling the 8x8 box top to
    bottom and centred, every value 0..16. Photos and drawings are mostly dark ink on white.
    """
    image = ImageOps.exif_transpose(image)  # phone photos store rotation in EXIF
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent pixels are often stored as black: put the drawing on white paper first.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    grey = np.asarray(image.convert("L"), dtype=np.float32)

    background = float(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    if background > 127:  # bright background: dark ink on paper
        grey, background = 255.0 - grey, 255.0 - background
    grey = np.clip(grey - background, 0.0, None)
    if grey.max() < 32:  # less contrast than 2 of the 16 levels
        raise InputError("The image is blank: no digit stands out from the background.")

    # Crop to the ink, pad to a square with the digit centred, then average down to 8x8.
    rows = np.flatnonzero(grey.max(axis=1) > 0.25 * grey.max())
    cols = np.flatnonzero(grey.max(axis=0) > 0.25 * grey.max())
    ink = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = max(ink.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    small = Image.fromarray(square).resize((8, 8), Image.Resampling.BOX)
    cells = np.asarray(small, dtype=np.float32)
    return (cells * (16.0 / max(float(cells.max()), 1e-6))).reshape(64)


def _reason(error: object) -> str:
    text = str(getattr(error, "strerror", None) or error).strip().rstrip(".")
    return text or type(error).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
