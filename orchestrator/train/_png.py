"""A loss curve as a PNG, with no plotting library: a line on a grid with numbered axes, drawn
into a numpy image and written with ``zlib`` (PNG's own compression).

matplotlib would be a large dependency for one picture; this draws what the training run needs
(steps across, loss up, a 3x5 pixel font for the numbers) in a few dozen lines.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["write_loss_png"]

# 3x5 glyphs, rows top to bottom, 3 bits a row (4 = left pixel).
_FONT: Final = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 2, 2),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), ".": (0, 0, 0, 0, 2), "k": (4, 5, 6, 5, 5),
    "-": (0, 0, 7, 0, 0),
}  # fmt: skip
_BG: Final = (255, 255, 255)
_GRID: Final = (228, 228, 228)
_AXIS: Final = (90, 90, 90)
_LINE: Final = (31, 119, 180)

Image = npt.NDArray[np.uint8]


def _text(img: Image, x: int, y: int, text: str, scale: int = 2) -> None:
    for ch in text:
        glyph = _FONT.get(ch)
        if glyph is not None:
            for r, bits in enumerate(glyph):
                for c in range(3):
                    if bits & (4 >> c):
                        y0, x0 = y + r * scale, x + c * scale
                        img[y0 : y0 + scale, x0 : x0 + scale] = _AXIS
        x += 4 * scale


def _line(img: Image, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
    n = max(abs(x1 - x0), abs(y1 - y0), 1)
    xs = np.rint(np.linspace(x0, x1, n + 1)).astype(int)
    ys = np.rint(np.linspace(y0, y1, n + 1)).astype(int)
    for dy in (0, 1):  # two pixels thick
        img[np.clip(ys + dy, 0, img.shape[0] - 1), np.clip(xs, 0, img.shape[1] - 1)] = color


def _label(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _png(img: Image) -> bytes:
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def write_loss_png(
    path: str | Path,
    points: Sequence[tuple[float, float]],
    *,
    width: int = 640,
    height: int = 360,
) -> Path:
    """Draw ``(step, loss)`` points as a line (steps across, loss up, from 0) with four
    numbered grid lines each way, and write it to ``path`` as a PNG."""
    img: Image = np.full((height, width, 3), _BG, dtype=np.uint8)
    left, right, top, bottom = 56, width - 16, 16, height - 32
    xs = [p[0] for p in points] or [0.0, 1.0]
    ys = [p[1] for p in points] or [0.0, 1.0]
    x_hi = max(max(xs), 1.0)
    y_hi = max(max(ys), 1e-9) * 1.05

    def px(x: float, y: float) -> tuple[int, int]:
        return (
            left + round((right - left) * x / x_hi),
            bottom - round((bottom - top) * y / y_hi),
        )

    for i in range(5):
        gy = bottom - round((bottom - top) * i / 4)
        gx = left + round((right - left) * i / 4)
        img[gy, left:right] = _GRID
        img[top:bottom, gx] = _GRID
        _text(img, 4, gy - 5, _label(y_hi * i / 4))
        label = _label(x_hi * i / 4)
        _text(img, gx - 4 * len(label), bottom + 8, label)
    img[top : bottom + 1, left] = _AXIS
    img[bottom, left : right + 1] = _AXIS
    for (xa, ya), (xb, yb) in itertools.pairwise(points):
        _line(img, *px(xa, ya), *px(xb, yb), _LINE)
    out = Path(path)
    out.write_bytes(_png(img))
    return out
