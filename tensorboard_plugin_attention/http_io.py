"""HTTP concerns of the plugin's routes: parameter parsing, content negotiation, binary and JSON bodies.

Nothing here knows about attention records; ``plugin.py`` parses with these, calls an ``*_impl`` and
responds with these. Stored zlib chunks (``format.compress_chunk``) are spliced into one ``deflate`` or
``gzip`` body here (:func:`splice_zlib`, :func:`splice_gzip`). Client mistakes are raised as ``tensorboard.errors`` and become JSON error bodies with
their 4xx status in one place (:func:`route`).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import re
import struct
import zlib
from typing import Any, Callable, Optional, Sequence

import numpy as np
from werkzeug import wrappers

from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util

from . import format as fmt

GZIP_MIN_BYTES = 1024  # binary responses at least this large are compressed when the client accepts it
GZIP_LEVEL = 1  # log8 codes compress ~10x even at level 1, and level 1 costs ~5 ms per MB

_UINT = re.compile(r"[0-9]{1,9}", re.ASCII)  # layer / head
_INT = re.compile(r"-?[0-9]{1,19}", re.ASCII)  # step (int64)
_DECIMAL = re.compile(r"[0-9]{1,6}(?:\.[0-9]{0,17})?|\.[0-9]{1,17}", re.ASCII)  # residual
_INT64 = (-(2**63), 2**63 - 1)


# ----------------------------------------------------------------------------------------- parameters
def required(args: Any, name: str) -> str:
    """A non-empty parameter; ``InvalidArgumentError`` if absent."""
    value = args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"missing parameter {name!r}")
    return value


def uint_param(args: Any, name: str, required: bool = True) -> Optional[int]:
    """A non-negative integer (layer, head); None if absent and not required."""
    return _int(args, name, _UINT, "a non-negative integer", required)


def step_param(args: Any, name: str = "step") -> int:
    """A step: an int64."""
    value = _int(args, name, _INT, "an integer", True)
    if not _INT64[0] <= value <= _INT64[1]:
        raise errors.InvalidArgumentError(f"parameter {name!r} is out of the int64 range")
    return value


def _int(args: Any, name: str, pattern: re.Pattern, what: str, required_: bool) -> Optional[int]:
    value = args.get(name)
    if value is None or value == "":
        if required_:
            raise errors.InvalidArgumentError(f"missing parameter {name!r}")
        return None
    if not pattern.fullmatch(value):
        raise errors.InvalidArgumentError(f"parameter {name!r} must be {what}, got {value[:40]!r}")
    return int(value)


_SPAN = re.compile(r"([0-9]{1,9}):([0-9]{1,9})", re.ASCII)


def span_param(args: Any, name: str) -> tuple:
    """A half-open token range ``a:b`` (two non-negative integers); checked against lengths by the impl."""
    value = args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"missing parameter {name!r} (a range of token indices 'start:end')")
    match = _SPAN.fullmatch(value)
    if not match:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be a range 'start:end' of token indices, "
                                          f"got {value[:40]!r}")
    return int(match.group(1)), int(match.group(2))


def unit_param(args: Any, name: str, default: float) -> float:
    """A decimal in [0, 1] (``0.5``, ``1``, ``.25``; no sign, exponent, nan or inf); ``default`` if absent."""
    value = args.get(name)
    if value is None or value == "":
        return default
    if not _DECIMAL.fullmatch(value) or not 0.0 <= float(value) <= 1.0:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be a decimal number in [0, 1], got {value[:40]!r}")
    return float(value)


def choice_param(args: Any, name: str, choices: tuple) -> str:
    """One of ``choices``; the first if absent."""
    value = args.get(name)
    if value is None or value == "":
        return choices[0]
    if value not in choices:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


def check_range(name: str, value: Optional[int], limit: int) -> None:
    """``InvalidArgumentError`` unless ``value`` is None or in ``0..limit-1``."""
    if value is not None and not 0 <= value < limit:
        raise errors.InvalidArgumentError(f"{name} {value} out of range: there are {limit} (0..{limit - 1})")


def request_context(request: Any) -> tuple:
    """(TensorBoard request context, experiment id) of a request."""
    return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)


# -------------------------------------------------------------------------------------- content coding
# The same test as tensorboard.backend.http_util (gzip, x-gzip or *, unless q=0).
_ALLOWS_GZIP = re.compile(r"(?:^|,|\s)(?:(?:x-)?gzip|\*)(?!;q=0)(?:\s|,|$)")


def gzip_accepted(request: Any) -> bool:
    return bool(_ALLOWS_GZIP.search(request.headers.get("Accept-Encoding", "")))


def deflate_accepted(request: Any) -> bool:
    """``deflate`` is listed in Accept-Encoding (not only through ``*``), without ``q=0``."""
    for part in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() == "deflate":
            q = params.strip().lower()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def gzip_bytes(body: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as f:
        f.write(body)
    return out.getvalue()


# ------------------------------------------------------------------------------------------- responses
def respond_json(request: Any, body: Any, code: int = 200, headers: Optional[list] = None):
    """A JSON body (NaN and infinities are refused: callers map them to null first)."""
    text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return http_util.Respond(request, text, "application/json", code=code, headers=headers)


def respond_binary(request: Any, body: bytes, encoding: Optional[str], headers: list):
    """``application/octet-stream``, with the content coding already applied to ``body``."""
    headers = list(headers) + [("Vary", "Accept-Encoding")]
    return http_util.Respond(request, body, "application/octet-stream", content_encoding=encoding, headers=headers)


def respond_image(request: Any, body: bytes, mime: str):
    """A logged image as it is stored (PNG / WebP: already compressed)."""
    return http_util.Respond(request, body, mime, headers=[("X-Content-Type-Options", "nosniff")])


def respond_static(request: Any, content: bytes, content_type: str):
    """A file of the built frontend."""
    return http_util.Respond(request, content, content_type)


class EncodedBodies:
    """Bodies of uint8 code responses: content negotiation (deflate, gzip or none) and a cache of encoded
    bodies (``cache``: an LRU with ``get(key)`` / ``put(key, body, cost)``), keyed by what the caller names."""

    def __init__(self, cache: Any):
        self._cache = cache

    def codes(self, request: Any, key: tuple, codes: np.ndarray, headers: list):
        """Computed codes as ``application/octet-stream``; gzipped (level 1, cached) when the client accepts it."""
        if codes.nbytes >= GZIP_MIN_BYTES and gzip_accepted(request):
            body = self._cache.get(key + ("gzip",))
            if body is None:
                body = gzip_bytes(np.ascontiguousarray(codes).tobytes())
                self._cache.put(key + ("gzip",), body, len(body))
            return respond_binary(request, body, "gzip", headers)
        return respond_binary(request, np.ascontiguousarray(codes).tobytes(), None, headers)

    def stored(self, request: Any, key: tuple, shape: tuple, n_chunks: int, read: Callable[[Callable], Any],
               chunks: Callable[[], list], codes: Callable[[], np.ndarray]):
        """Log8 codes stored as ``n_chunks`` equal zlib chunks (the heads of a layer, an overview), served
        without decompressing and compressing again when the client accepts it: ``deflate`` (every browser
        sends it) is the chunks spliced into one zlib stream; ``gzip`` the same as a gzip member (the chunks
        are decompressed, only for the CRC-32). Chunks written before ``compress_chunk`` (no sync flush) are
        decoded (``codes``) and compressed at level 1 instead. ``read`` runs the splice where read errors
        become the caller's 404; ``chunks`` come from a record the store checked against its index entry."""
        headers = codes_headers(shape, fmt.CODEC_NAME)
        size = int(np.prod(shape))
        encodings = []
        if size >= GZIP_MIN_BYTES:
            encodings = [enc for enc, ok in (("deflate", deflate_accepted), ("gzip", gzip_accepted)) if ok(request)]
        for enc in encodings:
            body = self._cache.get(key + (enc,))
            if body is not None:
                return respond_binary(request, body, enc, headers)
        if not encodings:
            return respond_binary(request, np.ascontiguousarray(codes()).tobytes(), None, headers)
        sizes = [size // n_chunks] * n_chunks  # the content of each chunk

        def splice() -> tuple:
            stored = chunks()
            for enc in encodings:
                body = (splice_zlib if enc == "deflate" else splice_gzip)(stored, sizes)
                if body is not None:
                    return body, enc
            return None, None

        body, enc = read(splice)
        if body is None:  # chunks from before compress_chunk: compress the decoded codes
            raw = np.ascontiguousarray(codes()).tobytes()
            enc = "gzip" if "gzip" in encodings else "deflate"
            body = gzip_bytes(raw) if enc == "gzip" else zlib.compress(raw, GZIP_LEVEL)
        self._cache.put(key + (enc,), body, len(body))
        return respond_binary(request, body, enc, headers)


def codes_headers(shape: tuple, codec: str) -> list:
    """Headers of a body of uint8 attention codes."""
    return [("X-Attention-Shape", ",".join(map(str, shape))), ("X-Attention-Codec", codec)]


def route(fn: Callable) -> Callable:
    """Wrap a route: client errors (``tensorboard.errors.PublicError``) become JSON ``{"error": ...}`` bodies
    with their status (TensorBoard's own handler would answer text/plain)."""

    @wrappers.Request.application
    @functools.wraps(fn)
    def wrapper(self, request):
        try:
            return fn(self, request)
        except errors.PublicError as e:
            return respond_json(request, {"error": str(e)}, e.http_code, e.headers)

    return wrapper


# --------------------------------------------------------------------------- stored chunks as bodies
# Chunks written by format.compress_chunk end on a sync flush, so a layer's chunks concatenate into one deflate
# stream: served as HTTP "deflate" (zlib) or "gzip" without decompressing and compressing again.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0, unknown OS
_ADLER_BASE = 65521


def _deflate_pieces(chunks: Sequence[bytes]) -> Optional[list]:
    """The raw deflate data of each zlib chunk, all but the last without their empty final block, so that
    their concatenation is one deflate stream; None if a chunk is not like that (an older chunk)."""
    pieces = []
    for i, c in enumerate(chunks):
        if len(c) < 8:
            return None
        cmf, flg = c[0], c[1]
        if cmf & 0x0F != 8 or cmf >> 4 > 7 or ((cmf << 8) | flg) % 31 or flg & 0x20:  # deflate, no dictionary
            return None
        body = c[2:-4]
        if i < len(chunks) - 1:
            if not body.endswith(fmt.SYNC_TAIL):
                return None
            body = body[:-2]
        pieces.append(body)
    return pieces


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of ``A + B`` from Adler-32 of ``A``, of ``B`` and ``len(B)`` (zlib's ``adler32_combine``)."""
    rem = len2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 = (sum1 + (adler2 & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_BASE - rem) % _ADLER_BASE
    return sum1 | (sum2 << 16)


def splice_zlib(chunks: Sequence[bytes], sizes: Sequence[int]) -> Optional[bytes]:
    """One zlib stream (HTTP ``Content-Encoding: deflate``) whose content is the chunks' contents one after
    the other, built without decompressing; None if the chunks cannot be spliced (then re-compress).

    ``sizes`` are the chunks' content sizes (from the header), for the Adler-32 trailer: a chunk whose
    content has another size makes the stream fail its check in the client, never decode to wrong data.
    A single chunk is returned as stored.
    """
    pieces = _deflate_pieces(chunks)
    if pieces is None:
        return None
    if len(chunks) == 1:
        return bytes(chunks[0])
    adler = 1  # Adler-32 of nothing
    for c, n in zip(chunks, sizes):
        adler = adler32_combine(adler, struct.unpack(">I", c[-4:])[0], n)
    return b"\x78\x01" + b"".join(pieces) + struct.pack(">I", adler)


def splice_gzip(chunks: Sequence[bytes], sizes: Sequence[int]) -> Optional[bytes]:
    """Like :func:`splice_zlib`, as a gzip member (HTTP ``Content-Encoding: gzip``). Its trailer needs the
    CRC-32 of the content, so each chunk is decompressed (about 3x cheaper than compressing again), which
    also checks its size: ``fmt.FormatError`` if a chunk's content is not ``sizes[i]`` bytes."""
    pieces = _deflate_pieces(chunks)
    if pieces is None:
        return None
    crc = total = 0
    for i, (piece, n) in enumerate(zip(pieces, sizes)):
        d = zlib.decompressobj(-15)
        out = d.decompress(piece, n + 1)  # bounded: never inflate past what the header promises
        if len(out) > n or d.unconsumed_tail:
            raise fmt.FormatError(f"a chunk holds more than the {n} bytes its header says")
        if d.eof != (i == len(pieces) - 1) or d.unused_data:
            return None  # a final block inside a piece: not a chunk we wrote, re-compress instead
        if len(out) != n:
            raise fmt.FormatError(f"a chunk holds {len(out)} bytes, its header says {n}")
        crc = zlib.crc32(out, crc)
        total += n
    return _GZIP_HEADER + b"".join(pieces) + struct.pack("<II", crc, total & 0xFFFFFFFF)
