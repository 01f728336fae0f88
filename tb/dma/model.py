"""Reference of the DMA stream layout (see intformer.hw.dma): each row of a 2-D
transfer starts a fresh beat, packed from byte lane 0, little-endian lanes.

Runs inside the simulation: no Amaranth imports.
"""

from __future__ import annotations

__all__ = ["beats_per_job", "pack_rows", "unpack_rows", "row_spans"]


def beats_per_job(rows: int, row_bytes: int, bytes_per_beat: int) -> int:
    if rows == 0 or row_bytes == 0:
        return 0
    return rows * -(-row_bytes // bytes_per_beat)


def row_spans(addr: int, rows: int, row_bytes: int, stride: int) -> list[tuple[int, int]]:
    """``[start, end)`` byte ranges of each row."""
    if row_bytes == 0:
        return []
    return [(addr + r * stride, addr + r * stride + row_bytes) for r in range(rows)]


def pack_rows(rows_data: list[bytes], bytes_per_beat: int, *, fill: bytes | None = None
              ) -> list[int]:
    """Stream beats (integers) carrying ``rows_data``; lanes past a row's end are zero,
    or taken from ``fill`` (cycled) to prove a consumer ignores them."""
    beats = []
    for n, row in enumerate(rows_data):
        for k in range(0, len(row), bytes_per_beat):
            chunk = row[k:k + bytes_per_beat]
            pad = bytes_per_beat - len(chunk)
            if fill is not None and pad:
                start = (n * 7 + k) % len(fill)
                chunk += (fill * 2)[start:start + pad]
            else:
                chunk += bytes(pad)
            beats.append(int.from_bytes(chunk, "little"))
    return beats


def unpack_rows(beats: list[int], rows: int, row_bytes: int, bytes_per_beat: int
                ) -> list[bytes]:
    per_row = -(-row_bytes // bytes_per_beat)
    out = []
    for r in range(rows):
        raw = b"".join(b.to_bytes(bytes_per_beat, "little")
                       for b in beats[r * per_row:(r + 1) * per_row])
        out.append(raw[:row_bytes])
    return out
