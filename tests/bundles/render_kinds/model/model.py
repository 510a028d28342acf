"""Answers in the shapes the playground renders: {"kind": "image" | "base64" | "records" | "nested"}."""

import base64
import struct
import zlib


def _png() -> bytes:
    """A 2x2 red PNG, written by hand (no Pillow needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = base64.b64encode(_png()).decode()


class Model:
    def predict(self, model_input):
        kind = model_input.get("kind")
        if kind == "image":
            return "data:image/png;base64," + PNG
        if kind == "base64":
            return {"mask": PNG}
        if kind == "records":
            return [{"label": "cat", "score": 0.9}, {"label": "dog", "score": 0.1, "note": "unsure"}]
        return {"outer": {"inner": [1, 2]}}
