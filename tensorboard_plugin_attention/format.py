"""The storage format, both halves: used by the writer (summary.py) and every reader (plugin, reader.py).

One logged example at one step is one *record*:

* an **index record** in the run's event files: a scalar string tensor holding the record header as JSON
  (tokens, shapes, flags, metrics and where the arrays live) — a few KB, so TensorBoard's loaders, which
  keep every event in memory, stay small;
* an **asset record** appended to a file in ``<run>/plugins/attention/``: a checksummed JSON header with a
  chunk table, then the chunks (one per kind × layer × head for attention and q/k, one overview per kind),
  so a reader fetches exactly one layer, one head's q/k or the overview by offset.

Attention is stored with ``log8``, a two-regime 8-bit code (logarithmic below ``LOG8_SPLIT``, linear
above), zlib-compressed per chunk; q/k as little-endian float16. Spec and bounds: docs/format.md.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import google_crc32c
import numpy as np

from .metadata import check_version
from .records import LayerArrays, LongLayer, is_long  # noqa: F401 - the record types the format encodes

KINDS = ("encoder", "decoder", "cross")
SELF_ATTENTION_KINDS = ("encoder", "decoder")  # queries and keys from one sequence (cross: decoder -> encoder)
ASSET_SUBDIR = os.path.join("plugins", "attention")
ASSET_SUFFIX = ".attn"

# Asset record framing: magic, header length, header CRC32C, header JSON, chunks.
MAGIC = b"TBATTN\x00\x00"
_FRAME = struct.Struct("<8sII")

# Bounds a reader trusts (a damaged or crafted record beyond them is refused, never allocated for).
MAX_COUNTS = {"layers": 1024, "heads": 1024, "q_len": 1 << 21, "k_len": 1 << 21}
MAX_HEAD_DIM = 1 << 14
MAX_HEADER_BYTES = 1 << 30  # a record header (tokens, chunk table) is far smaller
MAX_OVERVIEW_BINS = 4096  # an overview side a viewer draws (the writer pools to at most 64 bins)
# The bounds above as the frontend checks a header against them (served in /index as "limits").
LIMITS = {"layers": MAX_COUNTS["layers"], "heads": MAX_COUNTS["heads"],
          "tokens": max(MAX_COUNTS["q_len"], MAX_COUNTS["k_len"]), "headDim": MAX_HEAD_DIM,
          "overview": MAX_OVERVIEW_BINS}


def kind_sequences(kinds: Iterable[str], *, two_stacks: bool) -> dict[str, tuple[str, str]]:
    """``{kind: (query sequence, key sequence)}`` of the given kinds: the one map from a kind of attention to
    the token sequences (``"input"``, ``"output"``) its queries and keys run over.

    ``two_stacks``: an encoder-decoder record (the decoder reads ``"output"``); otherwise there is one
    sequence, ``"input"``. Cross attention is decoder queries over encoder keys.
    """
    out = {}
    for kind in kinds:
        if kind == "cross":
            out[kind] = ("output", "input")
        else:
            seq = "output" if kind == "decoder" and two_stacks else "input"
            out[kind] = (seq, seq)
    return out

# ---------------------------------------------------------------------------------------------- codec
# log8: code 0 is exactly 0; codes 1..LOG8_SPLIT_CODE-1 are log-spaced by LOG8_RATIO up to LOG8_SPLIT;
# codes LOG8_SPLIT_CODE..255 are linear with step 1/128 from LOG8_SPLIT up to exactly 1.0.
CODEC_NAME = "log8"
LOG8_STEP = 1.0 / 128
LOG8_LINEAR_CODES = 108  # codes 148..255
LOG8_SPLIT_CODE = 256 - LOG8_LINEAR_CODES
LOG8_SPLIT = 1.0 - (LOG8_LINEAR_CODES - 1) * LOG8_STEP  # 0.1640625
LOG8_RATIO = 1.05


def _make_lut() -> np.ndarray:
    lut = np.zeros(256, dtype=np.float64)
    codes = np.arange(1, LOG8_SPLIT_CODE)
    lut[1:LOG8_SPLIT_CODE] = LOG8_SPLIT * LOG8_RATIO ** (codes - LOG8_SPLIT_CODE)
    lut[LOG8_SPLIT_CODE:] = 1.0 - (255 - np.arange(LOG8_SPLIT_CODE, 256)) * LOG8_STEP
    return lut.astype(np.float32)


LUT = _make_lut()  # byte -> float32 value; also served to the frontend
_BOUNDS = ((LUT[1:].astype(np.float64) + LUT[:-1]) / 2).astype(np.float32)  # nearest-code thresholds
_GOLDEN = 0.6180339887498949


def _make_prefix_codes() -> np.ndarray:
    """The code of every float32 by its top 16 bits (sign, exponent, 7 mantissa bits), or 256 where a
    threshold falls inside that prefix's range: a table lookup then codes a value exactly as ``searchsorted``
    over the thresholds would (monotone in the value), which only the few split prefixes still need."""
    prefix = np.arange(1 << 16, dtype=np.uint32)
    lo, hi = (prefix << 16).view(np.float32), ((prefix << 16) | 0xFFFF).view(np.float32)
    clo, chi = np.searchsorted(_BOUNDS, lo, side="right"), np.searchsorted(_BOUNDS, hi, side="right")
    return np.where((clo == chi) & ~np.isnan(lo) & ~np.isnan(hi), clo, 256).astype(np.uint16)


_PREFIX_CODES = _make_prefix_codes()


def encode_attention(attention: np.ndarray, first_key: int = 0) -> np.ndarray:
    """Quantize probabilities in [0, 1] to log8 codes (uint8, same shape).

    Values are rounded to the nearest code, except below the smallest non-zero code (LUT[1] ≈ 1.3e-4),
    where ordered dithering along each row (a golden-ratio sequence over the key index) picks 0 or LUT[1] so
    that the row's expected sum is preserved instead of the whole tail rounding to 0. ``first_key`` is the
    key index of the last axis' first column, so a window codes each weight as the whole row would.
    """
    shape = np.shape(attention)
    if not np.size(attention):
        return np.zeros(shape, np.uint8)
    k = shape[-1] if shape else 1
    a = np.ascontiguousarray(attention, dtype=np.float32).reshape(-1, k)  # rows of keys
    codes = _PREFIX_CODES[a.view(np.uint32) >> 16]  # the nearest code by table lookup (7x faster than searchsorted)
    split = codes == 256
    if split.any():
        codes[split] = np.searchsorted(_BOUNDS, a[split], side="right")
    codes = codes.astype(np.uint8)
    tiny = a < LUT[1]
    if tiny.any():
        dither = np.modf((np.arange(k, dtype=np.float64) + first_key) * _GOLDEN + 0.5)[0].astype(np.float32)
        # codes[tiny] = the dithered 0 / 1, as bit operations (boolean indexing or np.where: 5x slower)
        pick = np.negative(tiny.view(np.uint8))  # 255 where tiny, else 0
        codes &= ~pick
        codes |= np.greater(a / LUT[1], dither).view(np.uint8) & pick
    return codes.reshape(shape)


def decode_attention(codes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_attention` (float32)."""
    return LUT[np.asarray(codes, dtype=np.uint8)]


def overview_bins(length: int, max_bins: int = 64) -> int:
    return min(length, max_bins)


def pool_overview(attention: np.ndarray, max_bins: int = 64) -> np.ndarray:
    """Pool ``(heads, q, k)`` to ``(heads, pq, pk)`` with pq, pk <= max_bins for the model view.

    Token i falls in bin floor(i * bins / length). Queries of a bin are averaged and keys of a bin summed,
    so each pooled row still sums to 1.
    """
    h, q, k = attention.shape
    pq, pk = overview_bins(q, max_bins), overview_bins(k, max_bins)
    qbin = np.arange(q) * pq // q
    kbin = np.arange(k) * pk // k
    # Sum keys within bins via cumulative sums at bin edges (vectorised, no np.add.at).
    kedges = np.searchsorted(kbin, np.arange(pk + 1))
    csum = np.concatenate([np.zeros((h, q, 1)), np.cumsum(attention, axis=2, dtype=np.float64)], axis=2)
    summed_k = csum[:, :, kedges[1:]] - csum[:, :, kedges[:-1]]
    qedges = np.searchsorted(qbin, np.arange(pq + 1))
    qsum = np.concatenate([np.zeros((h, 1, pk)), np.cumsum(summed_k, axis=1)], axis=1)
    pooled = (qsum[:, qedges[1:]] - qsum[:, qedges[:-1]]) / np.diff(qedges)[None, :, None]
    return pooled.astype(np.float32)


# -------------------------------------------------------------------------------------------- records
def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data``: every checksum of the format (record headers, chunks, index payloads)."""
    return google_crc32c.value(data)


# Long layers (format v3): too large to store densely (docs/format.md, "Long layers").
PYRAMID_BINS = 512  # finest pooled level of a long layer, per side
DEFAULT_TOPK = 8  # largest weights kept per row
LAYOUT_LONG = "long"  # kinds[kind]["layout"]; absent (or "dense") for dense kinds
PYRAMID_MAX = "pyramid_max"  # chunks[kind]["pyramid_max"][layer][head] (format v5): log8 codes like "pyramid"
VALUE_NORMS = "value_norms"  # chunks[kind]["value_norms"][layer] (format v5): (heads, k_len) float32
IMAGE_CHUNK = "image"  # chunks["image"] (format v4): the image's bytes, described by the header's "image"
IMAGE_MIMES = ("image/png", "image/webp")
QK_DTYPES = {"float16": "<f2", "bfloat16": "<u2", "float32": "<f4"}  # bfloat16 is stored as its raw bits


def common_qk_dtype(layers: Sequence[LongLayer]) -> list:
    """The layers with one q/k type for the whole kind (the header has one): float32 if they differ (exact)."""
    dtypes = {l.qk_dtype for l in layers if l.queries is not None}
    if len(dtypes) <= 1:
        return list(layers)
    return [l if l.queries is None or l.qk_dtype == "float32" else LongLayer(**{
        **l.__dict__, "qk_dtype": "float32",
        "queries": decode_qk(np.ascontiguousarray(l.queries).tobytes(), QK_DTYPES[l.qk_dtype], l.queries.shape),
        "keys": decode_qk(np.ascontiguousarray(l.keys).tobytes(), QK_DTYPES[l.qk_dtype], l.keys.shape)})
        for l in layers]


_pool: Optional[tuple[int, ThreadPoolExecutor]] = None  # (the process it belongs to, the pool)
_pool_lock = threading.Lock()


def _encoder_pool() -> ThreadPoolExecutor:
    """The threads that code chunks, started once per process (not per record); a forked child, which
    inherits the pool but none of its threads, starts its own."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="attention-encode"))
        return _pool[1]


def encode_record(header: dict, kinds: dict[str, Sequence[Any]], *, compress_level: int = 1,
                  image: Optional[bytes] = None, overview: bool = True) -> bytes:
    """One asset record as bytes: :func:`encode_record_parts` joined."""
    return b"".join(encode_record_parts(header, kinds, compress_level=compress_level, image=image,
                                        overview=overview))


def encode_record_parts(header: dict, kinds: dict[str, Sequence[Any]], *, compress_level: int = 1,
                        image: Optional[bytes] = None, overview: bool = True) -> list[bytes]:
    """Build one asset record: the header (completed with its chunk table) followed by the chunks, as the
    pieces to write in order (a writer need not join hundreds of MB into one more copy).

    ``header`` must already describe ``kinds`` (see :func:`describe_kind`); a kind's layers are all
    ``LayerArrays`` (dense) or all ``LongLayer``. Offsets in the chunk table are relative to the first byte
    after the header, so the header can be built before knowing its own size. ``image`` (format v4): the
    image's PNG / WebP bytes, described by ``header["image"]``, stored as the top-level chunk ``"image"``.
    ``overview=False`` leaves the dense kinds' ``overview`` chunk out (compact notebook pages: the page pools
    it from the attention chunks); records written to a run always have it.
    """
    # Chunks are coded in a few threads (zlib and numpy release the GIL: a 12-layer record at 8192 tokens
    # spent ~2 s coding on one core); each chunk's table entry [offset, length, crc] is filled in order after.
    pool = _encoder_pool()
    pending: list[tuple[Any, list[int]]] = []

    def add(data: Any) -> list[int]:
        """A chunk's entry in the table: ``data`` is its bytes, or a future of them."""
        entry = [0, 0, 0]
        pending.append((data, entry))
        return entry

    def zcodes(values: np.ndarray) -> list[int]:
        return add(pool.submit(lambda: compress_chunk(encode_attention(values).tobytes(), compress_level)))

    def zbytes(data: bytes) -> list[int]:
        return add(pool.submit(compress_chunk, data, compress_level))

    table: dict[str, Any] = {}
    for kind, layers in kinds.items():
        if layers and is_long(layers[0]):
            t: dict[str, Any] = {name: [] for name in ("lse", "pyramid", "topk_index", "topk_value", "queries", "keys")}
            peaks = all(l.pyramid_max is not None for l in layers)
            for layer in layers:
                t["lse"].append([add(np.ascontiguousarray(x, "<f4").tobytes()) for x in layer.lse])
                t["pyramid"].append([zcodes(x) for x in layer.pyramid])
                if peaks:  # format v5: the largest weight per cell beside the mean
                    t.setdefault(PYRAMID_MAX, []).append([zcodes(x) for x in layer.pyramid_max])
                t["topk_index"].append([zbytes(np.ascontiguousarray(x, "<u4").tobytes()) for x in layer.topk_index])
                t["topk_value"].append([zcodes(x) for x in layer.topk_value])
                if layer.queries is not None:
                    dt = QK_DTYPES[layer.qk_dtype]
                    t["queries"].append([add(np.ascontiguousarray(x, dt).tobytes()) for x in layer.queries])
                    t["keys"].append([add(np.ascontiguousarray(x, dt).tobytes()) for x in layer.keys])
            n, m = layers[0].lse.shape[1], layers[0].shape[2]
            pooled = np.stack([pool_pyramid(l.pyramid, n, m, overview_bins(n), overview_bins(m)) for l in layers])
        else:
            t = {"attention": [], "queries": [], "keys": []}
            for layer in layers:
                codes = encode_attention(layer.attention)
                t["attention"].append([zbytes(c.tobytes()) for c in codes])
                if layer.queries is not None and layer.keys is not None:
                    t["queries"].append([add(_f16(x)) for x in layer.queries])
                    t["keys"].append([add(_f16(x)) for x in layer.keys])
            pooled = np.stack([pool_overview(layer.attention) for layer in layers]) if overview else None
        if all(l.value_norms is not None for l in layers):  # format v5: one chunk (heads, k_len) per layer
            t[VALUE_NORMS] = [add(np.ascontiguousarray(l.value_norms, "<f4").tobytes()) for l in layers]
        if pooled is not None:
            t["overview"] = zcodes(pooled)
        if not t["queries"]:
            del t["queries"], t["keys"]
        table[kind] = t
    if image is not None:
        table[IMAGE_CHUNK] = add(bytes(image))
    blobs, pos = [], 0
    for data, entry in pending:
        data = data.result() if isinstance(data, Future) else data
        entry[:] = [pos, len(data), crc32c(data)]
        blobs.append(data)
        pos += len(data)
    header = dict(header, chunks=table)
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return [_FRAME.pack(MAGIC, len(head), crc32c(head)), head, *blobs]


def _f16(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x, dtype="<f2").tobytes()


def describe_kind(layers: Sequence[Any], query: str, key: str) -> dict:
    """The header entry for one kind of attention (dense ``LayerArrays`` or ``LongLayer``)."""
    h, q, k = layers[0].shape if is_long(layers[0]) else layers[0].attention.shape
    has_qk = all(l.queries is not None and l.keys is not None for l in layers)
    out = {
        "query": query,
        "key": key,
        "layers": len(layers),
        "heads": h,
        "q_len": q,
        "k_len": k,
        "head_dim": int(layers[0].queries.shape[-1]) if has_qk else None,
        "has_qk": has_qk,
        "overview_shape": [overview_bins(q), overview_bins(k)],
        "layer_info": [dict(l.info or {}) for l in layers],
        "has_value_norms": all(l.value_norms is not None for l in layers),
    }
    if is_long(layers[0]):
        out.update({
            "layout": LAYOUT_LONG,
            "kv_heads": int(layers[0].keys.shape[0]) if has_qk else None,
            "qk_dtype": layers[0].qk_dtype if has_qk else None,
            "pyramid_shape": list(layers[0].pyramid.shape[1:]),
            "pyramid_max": all(l.pyramid_max is not None for l in layers),
            "topk": int(layers[0].topk_index.shape[-1]),
            # exact windows need q/k and a score function q/k determine (no learned position bias)
            "exact": has_qk and not any((l.info or {}).get("position_bias") for l in layers),
        })
    return out


def bin_counts(length: int, count: int) -> np.ndarray:
    """How many of ``length`` tokens fall in each of ``count`` bins (``floor(i * count / length)``)."""
    return np.bincount(np.arange(length) * count // length, minlength=count)


def pool_pyramid(pyramid: np.ndarray, q_len: int, k_len: int, bq: int, bk: int) -> np.ndarray:
    """A coarser level ``(..., bq, bk)`` of a pyramid level ``(..., fq, fk)`` of a ``q_len x k_len`` matrix.

    Bins nest when ``b`` divides ``f`` (``floor(i * b / n) == floor(floor(i * f / n) / (f / b))``) or when a
    fine bin is one token (``f == n``), so a coarse bin is a run of fine bins: keys are summed, queries
    averaged weighted by how many tokens each fine bin holds. This equals ``pool_overview`` of the dense
    matrix at ``b`` bins (with 64, its overview). Levels are 512, 256, ..., so they always nest.
    """
    fq, fk = pyramid.shape[-2:]
    for f, b, n in ((fq, bq, q_len), (fk, bk, k_len)):
        if not (b <= f and (f % b == 0 or f == n)):
            raise ValueError(f"a level of {b} bins does not nest in one of {f} bins over {n} tokens")
    p = np.asarray(pyramid, np.float64)
    if (fq, fk) != (bq, bk):
        coarse_q = np.zeros(fq, np.intp)
        coarse_k = np.zeros(fk, np.intp)
        coarse_q[np.arange(q_len) * fq // q_len] = np.arange(q_len) * bq // q_len
        coarse_k[np.arange(k_len) * fk // k_len] = np.arange(k_len) * bk // k_len
        p = np.add.reduceat(p, np.searchsorted(coarse_k, np.arange(bk)), axis=-1)
        weights = bin_counts(q_len, fq).astype(np.float64)
        starts = np.searchsorted(coarse_q, np.arange(bq))
        p = np.add.reduceat(p * weights[:, None], starts, axis=-2) / np.add.reduceat(weights, starts)[:, None]
    return p.astype(np.float32)


def pool_pyramid_max(pyramid: np.ndarray, q_len: int, k_len: int, bq: int, bk: int) -> np.ndarray:
    """A coarser level of a max pyramid (each cell the largest weight of its block): the bins nest as in
    :func:`pool_pyramid`, and a coarse cell is the max of its fine cells."""
    fq, fk = pyramid.shape[-2:]
    for f, b, n in ((fq, bq, q_len), (fk, bk, k_len)):
        if not (b <= f and (f % b == 0 or f == n)):
            raise ValueError(f"a level of {b} bins does not nest in one of {f} bins over {n} tokens")
    p = np.asarray(pyramid, np.float32)
    for axis, f, b, n in ((-1, fk, bk, k_len), (-2, fq, bq, q_len)):
        if f != b:
            coarse = np.zeros(f, np.intp)
            coarse[np.arange(n) * f // n] = np.arange(n) * b // n
            p = np.maximum.reduceat(p, np.searchsorted(coarse, np.arange(b)), axis=axis)
    return p


class FormatError(ValueError):
    """A record that cannot be read: truncated, corrupt (checksum mismatch) or malformed."""


@dataclass
class AssetRecord:
    """A parsed asset-record header: where its chunks are, and how to read them."""

    path: str
    offset: int  # of the record in the file
    data_offset: int  # of the first chunk in the file
    header: dict

    def image_chunk(self) -> Optional[list]:
        """Chunk-table entry of the record's image (format v4), or None when it has none."""
        return self.header["chunks"].get(IMAGE_CHUNK)

    def chunk(self, kind: str, what: str, layer: Optional[int] = None, head: Optional[int] = None) -> list:
        """Chunk-table entry ``[offset, length, crc]``; raises KeyError/IndexError if absent."""
        entry = self.header["chunks"][kind][what]
        if layer is not None:
            entry = entry[layer]
        if head is not None:
            entry = entry[head]
        return entry


def parse_record_header(path: str, offset: int, read_range) -> AssetRecord:
    """Read and verify the asset record at ``offset`` of ``path``. ``read_range(path, offset, n) -> bytes``."""
    frame = read_range(path, offset, _FRAME.size)
    if len(frame) < _FRAME.size:
        raise FormatError(f"{path}@{offset}: truncated record frame")
    magic, n, crc = _FRAME.unpack(frame)
    if magic != MAGIC:
        raise FormatError(f"{path}@{offset}: not an attention record (bad magic)")
    if n > MAX_HEADER_BYTES:
        raise FormatError(f"{path}@{offset}: record header of {n} bytes is larger than any writer makes")
    head = read_range(path, offset + _FRAME.size, n)
    if len(head) < n:
        raise FormatError(f"{path}@{offset}: truncated record header")
    if crc32c(head) != crc:
        raise FormatError(f"{path}@{offset}: record header checksum mismatch")
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}@{offset}: record header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("chunks"), dict):
        raise FormatError(f"{path}@{offset}: record header lacks its chunk table")
    return AssetRecord(path, offset, offset + _FRAME.size + n, upgrade_header(header))


def record_mismatch(index: dict, header: dict) -> Optional[str]:
    """Why the asset record ``header`` is not the record the index entry ``index`` points to, or None.

    The index payload is the record header without its chunk table (plus its location and checksum), so
    every field must be equal: tag, example, step, wall time, tokens and every kind's shapes. A torn or
    misplaced write, or an index pointing at another step's bytes, is caught here before anything is served.
    """
    mine = {k: v for k, v in index.items() if k not in _INDEX_ONLY}
    theirs = {k: v for k, v in header.items() if k != "chunks"}
    if mine == theirs:
        return None
    for key in ("tag", "example", "step", "kinds", "sequences", "version"):
        if mine.get(key) != theirs.get(key):
            return f"the asset record's {key} differs from its index record's"
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    return f"the asset record differs from its index record in {', '.join(map(str, diff[:5]))}"


def read_chunk(record: AssetRecord, entry: Sequence[int], read_range) -> bytes:
    off, length, crc = entry
    data = read_range(record.path, record.data_offset + off, length)
    if len(data) < length:
        raise FormatError(f"{record.path}: truncated chunk at {record.data_offset + off}")
    if crc32c(data) != crc:
        raise FormatError(f"{record.path}: chunk checksum mismatch at {record.data_offset + off}")
    return data


def read_chunks(record: AssetRecord, entries: Sequence[Sequence[int]], read_range) -> list[bytes]:
    """Several chunks, checksummed; one read when they are adjacent (the heads of one layer are)."""
    if len(entries) < 2:
        return [read_chunk(record, e, read_range) for e in entries]
    start = min(e[0] for e in entries)
    end = max(e[0] + e[1] for e in entries)
    if end - start > 2 * sum(e[1] for e in entries) + (1 << 16):  # scattered: read them one by one
        return [read_chunk(record, e, read_range) for e in entries]
    span = read_range(record.path, record.data_offset + start, end - start)
    out = []
    for off, length, crc in entries:
        data = span[off - start: off - start + length]
        if len(data) < length or off < start:
            raise FormatError(f"{record.path}: truncated chunk at {record.data_offset + off}")
        if crc32c(data) != crc:
            raise FormatError(f"{record.path}: chunk checksum mismatch at {record.data_offset + off}")
        out.append(data)
    return out


def decode_codes(data: bytes, shape: Iterable[int]) -> np.ndarray:
    """A compressed log8 chunk -> uint8 codes of ``shape``; never inflates more than ``shape`` holds
    (``FormatError`` if the chunk's content has another size)."""
    shape = tuple(shape)
    size = int(np.prod(shape, dtype=np.int64))
    d = zlib.decompressobj()
    out = d.decompress(data, size + 1)  # bounded: a crafted chunk cannot inflate past what was asked for
    if len(out) != size or d.unconsumed_tail:
        raise FormatError(f"a chunk holds {len(out)}{'+' if d.unconsumed_tail else ''} bytes, expected {size}")
    return np.frombuffer(out, dtype=np.uint8).reshape(shape)


# ---------------------------------------------------------------------- chunks splicable as HTTP bodies
# A zlib stream is a 2-byte header, raw deflate data and the Adler-32 of the content (RFC 1950): exactly
# what HTTP calls "deflate". Deflate streams can be concatenated when all but the last end on a byte
# boundary with a non-final block, which is what a sync flush leaves; compress_chunk ends every chunk
# with a sync flush and then an empty final block, so the backend can serve a whole layer (12 chunks)
# as one deflate or gzip body by concatenation, without decompressing and compressing 48 MB again.
# Older chunks (plain zlib.compress) are still read the same way; they are served by re-compressing.
SYNC_TAIL = b"\x00\x00\xff\xff\x03\x00"  # sync flush (empty stored block), then an empty final block


def compress_chunk(data: bytes, level: int = 1) -> bytes:
    """zlib stream of ``data`` that ends with a sync flush and an empty final block (see above): an ordinary
    zlib stream for every reader (7 bytes longer), and splicable by ``http_io.splice_zlib`` / ``http_io.splice_gzip``."""
    c = zlib.compressobj(level)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH) + c.flush(zlib.Z_FINISH)


def decode_qk(data: bytes, dtype: str, shape: Iterable[int]) -> np.ndarray:
    """q/k of a long layer (``QK_DTYPES``: float16, float32, or bfloat16 bits) as float32."""
    raw = np.frombuffer(data, dtype).reshape(tuple(shape))
    if dtype == QK_DTYPES["bfloat16"]:
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def decode_f16(data: bytes, shape: Iterable[int]) -> np.ndarray:
    return np.frombuffer(data, dtype="<f2").reshape(tuple(shape))


def upgrade_header(header: dict) -> dict:
    """Check the version and migrate an older header to the current layout.

    v1 -> v2 changed only the index payload (its checksum), v2 -> v3 added long layers (kinds with
    ``"layout": "long"``), v3 -> v4 an optional image (``"image"`` and its chunk), v4 -> v5 optional value
    norms per layer (``"has_value_norms"`` and the chunks ``"value_norms"``) and a long kind's max pyramid
    (``"pyramid_max"`` and its chunks): older headers need no migration.
    """
    check_version(header.get("version"))
    return header


# ----------------------------------------------------------------------------------------- index record
# The index payload ends with its own checksum (format v2): the Rust data server does not verify the CRCs of
# events that parse, so a flipped bit in the index would otherwise be served as tokens or metadata.
INDEX_CRC_KEY = "index_crc32c"
_INDEX_ONLY = ("asset", INDEX_CRC_KEY)  # index payload fields that are not part of the record header
_INDEX_CRC_TAIL = re.compile(rb',"' + INDEX_CRC_KEY.encode() + rb'":([0-9]{1,10})\}\Z')


def index_payload(header: dict, file: str, offset: int, length: int) -> bytes:
    """The JSON stored in the event file: the header without its chunk table, plus the record's location,
    then ``"index_crc32c"``: the CRC32C of the same JSON without that last member (its exact bytes)."""
    index = {k: v for k, v in header.items() if k != "chunks"}
    index["asset"] = {"file": file, "offset": offset, "length": length}
    return encode_index(index)


def encode_index(index: dict) -> bytes:
    """An index record (as :func:`parse_index_payload` returns it) as payload bytes, checksummed anew."""
    body = json.dumps({k: v for k, v in index.items() if k != INDEX_CRC_KEY}, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")
    return body[:-1] + b',"%s":%d}' % (INDEX_CRC_KEY.encode(), crc32c(body))


def parse_index_payload(payload: bytes) -> dict:
    """Inverse of :func:`index_payload`: checks the checksum (v2 on), JSON, the version and everything
    readers rely on (:func:`validate_index`); raises ``ValueError`` (``FormatError`` /
    ``UnsupportedVersionError``) otherwise.
    """
    try:
        index = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"attention index record is not JSON: {e}") from e
    if not isinstance(index, dict) or not isinstance(index.get("asset"), dict):
        raise FormatError("attention index record lacks its asset location")
    index = upgrade_header(index)
    if index["version"] >= 2 or INDEX_CRC_KEY in index:
        tail = _INDEX_CRC_TAIL.search(payload)
        if tail is None:
            raise FormatError("attention index record lacks its checksum")
        if crc32c(payload[: tail.start()] + b"}") != int(tail.group(1)):
            raise FormatError("attention index record checksum mismatch (the event file is damaged)")
    validate_index(index)
    return index


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def index_problem(index: dict) -> Optional[str]:
    """Why an index record (version already checked) cannot be served, or None.

    Readers rely on these fields (kinds with their counts, the sequences, the asset location); a record
    that lacks them is skipped like an unreadable one. Metrics are not checked here: a malformed
    ``metrics`` entry only makes those values unavailable.
    """
    kinds = index.get("kinds")
    if not isinstance(kinds, dict) or not kinds:
        return "no kinds"
    sequences = index.get("sequences")
    if not isinstance(sequences, dict):
        return "no sequences"
    for name, k in kinds.items():
        if name not in KINDS or not isinstance(k, dict):
            return f"bad kind {str(name)[:40]!r}"
        if k.get("layout", "dense") not in ("dense", LAYOUT_LONG):
            return f"{name}.layout {str(k.get('layout'))[:40]!r} is unknown"
        for field_, limit in MAX_COUNTS.items():  # the writer refuses empty attention
            if not _is_count(k.get(field_)) or not 0 < k[field_] <= limit:
                return f"{name}.{field_} is not a count in 1..{limit}"
        for length, seq in (("q_len", k.get("query")), ("k_len", k.get("key"))):
            tokens = sequences.get(seq) if isinstance(seq, str) else None
            if not isinstance(tokens, list) or len(tokens) != k[length]:
                return f"{name}.{length} is not the length of its token sequence {str(seq)[:40]!r}"
        if k.get("has_qk") and not (_is_count(k.get("head_dim")) and 0 < k["head_dim"] <= MAX_HEAD_DIM):
            return f"{name}.head_dim is not a count in 1..{MAX_HEAD_DIM}"
        ov = k.get("overview_shape")
        if not (isinstance(ov, list) and len(ov) == 2 and all(_is_count(x) for x in ov)
                and 0 < ov[0] <= k["q_len"] and 0 < ov[1] <= k["k_len"]):
            return f"{name}.overview_shape is not two counts within the lengths"
        if not isinstance(k.get("has_value_norms", False), bool):
            return f"{name}.has_value_norms is not a boolean"
        if k.get("layout") == LAYOUT_LONG:
            problem = _long_kind_problem(k)
            if problem:
                return f"{name}.{problem}"
    asset = index.get("asset")
    if not isinstance(asset, dict) or not isinstance(asset.get("file"), str) or not _is_count(asset.get("offset")):
        return "bad asset location"
    return None


def image_problem(header: dict) -> Optional[str]:
    """Why a record's ``"image"`` field cannot be drawn over its tokens, or None (also None without one).
    Only the image is then unavailable: the record's attention is served as usual."""
    im = header.get("image")
    if im is None:
        return None
    if not isinstance(im, dict):
        return "image is not an object"
    if im.get("mime") not in IMAGE_MIMES:
        return f"image mime {str(im.get('mime'))[:40]!r} is not one of {IMAGE_MIMES}"
    grid, tokens = im.get("grid"), header.get("sequences", {}).get(im.get("sequence"))
    if not (isinstance(grid, list) and len(grid) == 2 and all(_is_count(x) and x > 0 for x in grid)):
        return "image grid is not two counts"
    for side in ("width", "height", "bytes", "patch_start"):
        if not _is_count(im.get(side)):
            return f"image {side} is not a count"
    if not isinstance(tokens, list) or im["patch_start"] + grid[0] * grid[1] > len(tokens):
        return "image patches do not fit its token sequence"
    return None


def _long_kind_problem(k: dict) -> Optional[str]:
    ps = k.get("pyramid_shape")
    if not (isinstance(ps, list) and len(ps) == 2 and all(_is_count(x) for x in ps)
            and 0 < ps[0] <= min(k["q_len"], PYRAMID_BINS) and 0 < ps[1] <= min(k["k_len"], PYRAMID_BINS)):
        return "pyramid_shape is not two counts within the lengths"
    if not isinstance(k.get("pyramid_max", False), bool):
        return "pyramid_max is not a boolean"
    if not (_is_count(k.get("topk")) and 0 < k["topk"] <= min(k["k_len"], 1024)):
        return "topk is not a count within k_len"
    if k.get("has_qk"):
        kv = k.get("kv_heads")
        if not (_is_count(kv) and kv > 0 and k["heads"] % kv == 0):
            return "kv_heads does not divide heads"
        if k.get("qk_dtype") not in QK_DTYPES:
            return "qk_dtype is unknown"
    return None


def validate_index(index: dict) -> None:
    """Raise :class:`FormatError` if an index record lacks what readers rely on (see :func:`index_problem`)."""
    problem = index_problem(index)
    if problem:
        raise FormatError(f"malformed attention index record: {problem}")
