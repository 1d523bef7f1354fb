"""The TensorBoard side: ``AttentionLoader`` (flags) and ``AttentionPlugin`` (HTTP routes).

Routes are thin ``*_route`` handlers over testable ``*_impl`` methods (docs/http-api.md is the contract).
Everything is read through ``context.data_provider`` (index records) and the run's asset files
(``<logdir>/<run>/plugins/attention/``, by offset through ``reader.RecordStore``), so the plugin works
under both loaders: the Python multiplexer and the Rust data server (``--load_fast=true``, where
``context.multiplexer`` is None).

Errors: every client error is a JSON ``{"error": ...}`` body with status 400 (malformed or out-of-range
parameter) or 404 (unknown run / tag / example / step / kind, or data that cannot be read). Unreadable data
(a missing or corrupt asset file, an unknown format version) hides only what it affects and is logged once.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import logging
import math
import mimetypes
import os
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from werkzeug import wrappers

from tensorboard import context as tb_context
from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin

from . import format as fmt
from . import metrics as metrics_mod
from .metadata import FORMAT_VERSION, PLUGIN_NAME, UnsupportedVersionError
from .reader import LRU, IndexEntry, RecordStore, list_index

logger = logging.getLogger(__name__)

DEFAULT_CACHE_MB = 256
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
INDEX_TTL_S = 1.0  # within a burst of requests, reuse the index without asking the data provider again
GZIP_MIN_BYTES = 1024  # binary responses at least this large are gzipped when the client accepts it
GZIP_LEVEL = 1  # log8 codes compress ~10x even at level 1, and level 1 costs ~5 ms per MB
GZIPPED_CACHE_FRACTION = 8  # compressed bodies are cached in up to 1/8 of --attention_cache_mb (on top of it)
DERIVED_CACHE_FRACTION = 16  # rollout codes: up to 1/16 of --attention_cache_mb (on top of it)
DIVERGENCE_CACHE_ITEMS = 256  # /divergence results (a few KB each)
FUSIONS = ("mean", "max", "min")
LN2 = math.log(2.0)

_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain",
    ".woff2": "font/woff2",
    ".ico": "image/x-icon",
}
_UINT = re.compile(r"[0-9]{1,9}", re.ASCII)  # layer / head
_INT = re.compile(r"-?[0-9]{1,19}", re.ASCII)  # step (int64)
_DECIMAL = re.compile(r"[0-9]{1,6}(?:\.[0-9]{0,17})?|\.[0-9]{1,17}", re.ASCII)  # residual

# Errors that mean "this record's data cannot be read" (missing, truncated or corrupt asset file, bad
# chunk table, unknown version): the request for it is a 404, everything else keeps serving.
_DATA_ERRORS = (fmt.FormatError, UnsupportedVersionError, OSError, zlib.error, ValueError, KeyError,
                IndexError, TypeError)
_warned: set = set()


def _warn_once(key: Any, msg: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(msg, *args)


# ------------------------------------------------------------------------------------------------ loader
class AttentionLoader(base_plugin.TBLoader):
    """Adds ``--attention_cache_mb`` and keeps every step of the attention plugin by default."""

    def define_flags(self, parser):
        parser.add_argument(
            "--attention_cache_mb",
            type=_nonnegative_int,
            default=DEFAULT_CACHE_MB,
            help="Memory (MB) for the attention plugin's cache of decoded layers (an LRU; 0 disables it). "
            "(default: %(default)s)",
        )

    def fix_flags(self, flags):
        fix_samples_per_plugin(flags)
        fix_reload_multifile(flags)

    def load(self, context):
        return AttentionPlugin(context)


def _nonnegative_int(value: str) -> int:
    import argparse

    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be non-negative: {value!r}")
    return n


def _parse_samples_per_plugin(value: str) -> dict:
    """Same syntax as TensorBoard's ``--samples_per_plugin`` (``name=count,name=count``)."""
    out = {}
    for token in value.split(","):
        token = token.strip()
        if token:
            k, v = token.split("=")
            out[k.strip()] = int(v)
    return out


def fix_reload_multifile(flags: Any) -> None:
    """Poll every active event file of a run, unless the user chose (``--reload_multifile``).

    Attention is often written by its own writer beside the training loop's (``AttentionWriter`` next to a
    ``SummaryWriter``), so a run has two live event files; TensorBoard's Python loader otherwise polls only
    the newest and would miss records appended to the other while it runs. (The Rust loader reads all.)
    """
    if hasattr(flags, "reload_multifile") and flags.reload_multifile is None:
        flags.reload_multifile = True


def fix_samples_per_plugin(flags: Any) -> None:
    """Keep every attention step (``attention=0``) unless the user chose a value for ``attention``.

    TensorBoard parses ``--samples_per_plugin`` into a dict (argparse applies the type to the string
    default too); ``TensorBoard.configure(samples_per_plugin="a=1")`` leaves a string. Both become a dict
    here, which is what both loaders (the multiplexer's size guidance and the Rust data server's
    ``--samples-per-plugin``, where 0 is passed as ``all``) expect.
    """
    spp = getattr(flags, "samples_per_plugin", None)
    if spp is None:
        spp = {}
    elif isinstance(spp, str):
        spp = _parse_samples_per_plugin(spp)
    else:
        spp = dict(spp)
    spp.setdefault(PLUGIN_NAME, 0)
    flags.samples_per_plugin = spp


# ---------------------------------------------------------------------------------------------- index
@dataclass
class _RunIndex:
    key: frozenset  # what the data provider's listing said about this run's tags when we read it
    entries: dict  # (tag, example, step) -> IndexEntry
    json: list = field(default_factory=list)  # this run's "tags" list for /index, built once
    examples: dict = field(default_factory=dict)  # (tag, example) -> [IndexEntry] sorted by step


@dataclass
class _Snapshot:
    time: float
    runs: dict  # run -> _RunIndex


class IndexCache:
    """``list_index`` results, re-read per run only when the data provider's listing of that run changes
    (max step, max wall time or metadata of any tag), and not asked again within ``ttl`` seconds."""

    def __init__(self, data_provider: Any, ttl: float = INDEX_TTL_S):
        self._provider = data_provider
        self._ttl = ttl
        self._snapshots: dict[str, _Snapshot] = {}  # experiment id -> snapshot
        self._lock = threading.Lock()

    def get(self, ctx: Any, experiment_id: str, *, fresh: bool = False) -> dict:
        """run -> _RunIndex. ``fresh`` asks the data provider even within the TTL."""
        snap = self._snapshots.get(experiment_id)
        if snap is not None and not fresh and time.monotonic() - snap.time < self._ttl:
            return snap.runs  # no lock: snapshots are replaced, never mutated
        with self._lock:
            snap = self._snapshots.get(experiment_id)
            if snap is not None and not fresh and time.monotonic() - snap.time < self._ttl:
                return snap.runs  # refreshed by another request while this one waited
            listing = self._provider.list_tensors(ctx, experiment_id=experiment_id, plugin_name=PLUGIN_NAME)
            old = snap.runs if snap is not None else {}
            runs = {}
            for run, tags in listing.items():
                key = frozenset((t, ts.max_step, ts.max_wall_time, ts.plugin_content) for t, ts in tags.items())
                prev = old.get(run)
                if prev is not None and prev.key == key:
                    runs[run] = prev
                    continue
                entries: dict = {}
                for e in list_index(self._provider, ctx, experiment_id, run=run):
                    if e.run != run:
                        continue  # (malformed records were skipped by list_index: format.validate_index)
                    k = (e.tag, e.example, e.step)
                    if k not in entries or entries[k].wall_time <= e.wall_time:
                        entries[k] = e  # a step logged twice (restarted training): the latest wins
                runs[run] = _RunIndex(key, entries, _run_json(entries), _by_example(entries))
            self._snapshots[experiment_id] = _Snapshot(time.monotonic(), runs)
            return runs


def _natural(name: str) -> tuple:
    return (0, int(name), name) if name.isdigit() and len(name) < 19 else (1, 0, name)


def _public_header(index: dict) -> dict:
    """A record header as served: without the asset location (an implementation detail)."""
    return {k: v for k, v in index.items() if k not in ("asset", "chunks")}


def _by_example(entries: dict) -> dict:
    out: dict = {}
    for (tag, example, _), e in entries.items():
        out.setdefault((tag, example), []).append(e)
    for es in out.values():
        es.sort(key=lambda e: e.step)
    return out


def _run_json(entries: dict) -> list:
    """The ``tags`` list of one run in ``/index``."""
    by_tag: dict = {}
    for (tag, example, step), e in entries.items():
        by_tag.setdefault(tag, {}).setdefault(example, []).append(e)
    tags = []
    for tag in sorted(by_tag):
        examples = []
        for example in sorted(by_tag[tag], key=_natural):
            es = sorted(by_tag[tag][example], key=lambda e: e.step)
            examples.append({
                "example": example,
                "steps": [e.step for e in es],
                "qk_steps": [e.step for e in es
                             if any(k.get("has_qk") for k in e.index.get("kinds", {}).values())],
                "header": _public_header(es[-1].index),
            })
        tags.append({"tag": tag, "examples": examples})
    return tags


@functools.lru_cache(maxsize=1)
def _codec_json() -> dict:
    # Shortest decimal that round-trips through float32, so Float32Array(lut) reproduces LUT exactly.
    return {"name": fmt.CODEC_NAME, "lut": [float(np.format_float_positional(v, unique=True)) for v in fmt.LUT]}


# ----------------------------------------------------------------------------------------- parameters
def _required(args: Any, name: str) -> str:
    value = args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"missing parameter {name!r}")
    return value


def _int_param(args: Any, name: str, pattern: re.Pattern = _UINT, required: bool = True) -> Optional[int]:
    value = args.get(name)
    if value is None or value == "":
        if required:
            raise errors.InvalidArgumentError(f"missing parameter {name!r}")
        return None
    if not pattern.fullmatch(value):
        raise errors.InvalidArgumentError(f"parameter {name!r} must be a non-negative integer, got {value[:40]!r}"
                                          if pattern is _UINT else
                                          f"parameter {name!r} must be an integer, got {value[:40]!r}")
    return int(value)


def _unit_param(args: Any, name: str, default: float) -> float:
    """A decimal in [0, 1] (``0.5``, ``1``, ``.25``; no sign, exponent, nan or inf); ``default`` if absent."""
    value = args.get(name)
    if value is None or value == "":
        return default
    if not _DECIMAL.fullmatch(value) or not 0.0 <= float(value) <= 1.0:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be a decimal number in [0, 1], got {value[:40]!r}")
    return float(value)


def _choice_param(args: Any, name: str, choices: tuple) -> str:
    value = args.get(name)
    if value is None or value == "":
        return choices[0]
    if value not in choices:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


def _check_range(name: str, value: Optional[int], limit: int) -> None:
    if value is not None and not 0 <= value < limit:
        raise errors.InvalidArgumentError(f"{name} {value} out of range: there are {limit} (0..{limit - 1})")


# ------------------------------------------------------------------------------------------- responses
def _json_error(request: Any, code: int, message: str, headers: Optional[list] = None):
    return http_util.Respond(request, {"error": message}, "application/json", code=code, headers=headers)


# The same test as tensorboard.backend.http_util (gzip, x-gzip or *, unless q=0).
_ALLOWS_GZIP = re.compile(r"(?:^|,|\s)(?:(?:x-)?gzip|\*)(?!;q=0)(?:\s|,|$)")


def _gzip_accepted(request: Any) -> bool:
    return bool(_ALLOWS_GZIP.search(request.headers.get("Accept-Encoding", "")))


def _deflate_accepted(request: Any) -> bool:
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


def _gzip(body: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as f:
        f.write(body)
    return out.getvalue()


def _route(fn: Callable) -> Callable:
    """Wrap a route: client errors (``tensorboard.errors.PublicError``) become JSON error bodies with their
    status (TensorBoard's own handler would answer text/plain)."""

    @wrappers.Request.application
    @functools.wraps(fn)
    def wrapper(self, request):
        try:
            return fn(self, request)
        except errors.PublicError as e:
            return _json_error(request, e.http_code, str(e), e.headers)

    return wrapper


# ---------------------------------------------------------------------------------------------- plugin
class AttentionPlugin(base_plugin.TBPlugin):
    """Serves logged attention: the index, one layer / one head's q/k / the overview per request."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._data_provider = context.data_provider
        logdir = context.logdir or ""
        self._logdir = os.path.expanduser(logdir) if logdir and "://" not in logdir else logdir
        flags = context.flags
        cache_mb = getattr(flags, "attention_cache_mb", DEFAULT_CACHE_MB) if flags is not None else DEFAULT_CACHE_MB
        if not isinstance(cache_mb, int) or cache_mb < 0:
            cache_mb = DEFAULT_CACHE_MB
        self._store = RecordStore(self._logdir, cache_bytes=cache_mb << 20)
        # compressed attention bodies (~10-25x smaller than the codes): a warm request costs no compression
        self._encoded = LRU((cache_mb << 20) // GZIPPED_CACHE_FRACTION)  # encoded bodies, by bytes
        self._rollouts = LRU((cache_mb << 20) // DERIVED_CACHE_FRACTION)  # rollout codes, by bytes
        self._divergences = LRU(DIVERGENCE_CACHE_ITEMS if cache_mb else 0)  # by items
        self._index = IndexCache(self._data_provider)
        self._static_root = os.path.realpath(STATIC_DIR)

    # ---- TBPlugin
    def get_plugin_apps(self):
        return {
            "/index": self.index_route,
            "/header": self.header_route,
            "/attention": self.attention_route,
            "/qk": self.qk_route,
            "/overview": self.overview_route,
            "/metrics": self.metrics_route,
            "/divergence": self.divergence_route,
            "/rollout": self.rollout_route,
            "/index.js": self.index_js_route,
            "/static/*": self.static_route,
            "/*": self.not_found_route,
        }

    def is_active(self):
        """True when any run has attention records (TensorBoard asks ``list_plugins`` first anyway)."""
        if self._data_provider is None:
            return False
        try:
            return PLUGIN_NAME in self._data_provider.list_plugins(tb_context.RequestContext(), experiment_id="")
        except Exception:  # a data provider without experiment "" (e.g. a remote one): not active
            return False

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Attention")

    # ---- index
    def index_impl(self, ctx: Any, experiment: str) -> dict:
        runs = self._index.get(ctx, experiment, fresh=True)
        return {
            "version": FORMAT_VERSION,
            "codec": _codec_json(),
            "runs": [{"run": run, "tags": runs[run].json} for run in sorted(runs) if runs[run].json],
        }

    def entry(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int) -> IndexEntry:
        """The index entry of one example at one step; ``NotFoundError`` saying which part is unknown."""
        runs = self._index.get(ctx, experiment)
        e = _lookup(runs, run, tag, example, step)
        if e is None:  # maybe logged since the cached snapshot
            runs = self._index.get(ctx, experiment, fresh=True)
            e = _lookup(runs, run, tag, example, step)
        if e is not None:
            return e
        ri = runs.get(run)
        if ri is None:
            raise errors.NotFoundError(f"unknown run {run!r}")
        keys = ri.entries.keys()
        if not any(t == tag for t, _, _ in keys):
            raise errors.NotFoundError(f"run {run!r} has no attention tag {tag!r}")
        if not any(t == tag and x == example for t, x, _ in keys):
            raise errors.NotFoundError(f"tag {tag!r} of run {run!r} has no example {example!r}")
        raise errors.NotFoundError(f"example {example!r} of {run!r}/{tag!r} has no step {step}")

    def example_entries(self, ctx: Any, experiment: str, run: str, tag: str, example: str) -> list:
        """Every step's index entry of one example, by step; ``NotFoundError`` saying which part is unknown."""
        for fresh in (False, True):
            runs = self._index.get(ctx, experiment, fresh=fresh)
            ri = runs.get(run)
            es = ri.examples.get((tag, example)) if ri is not None else None
            if es:
                return es
        if ri is None:
            raise errors.NotFoundError(f"unknown run {run!r}")
        if not any(t == tag for t, _ in ri.examples):
            raise errors.NotFoundError(f"run {run!r} has no attention tag {tag!r}")
        raise errors.NotFoundError(f"tag {tag!r} of run {run!r} has no example {example!r}")

    def header_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int) -> dict:
        return _public_header(self.entry(ctx, experiment, run, tag, example, step).index)

    def _kind(self, e: IndexEntry, kind: str) -> dict:
        kinds = e.index.get("kinds") or {}
        if kind not in kinds:
            have = ", ".join(sorted(kinds)) or "none"
            raise errors.NotFoundError(f"no {kind!r} attention at step {e.step} (logged kinds: {have})")
        return kinds[kind]

    def _read(self, e: IndexEntry, what: str, load: Callable[[], Any]) -> Any:
        """Run ``load``; unreadable data becomes a 404 for this request only (logged once per record)."""
        try:
            return load()
        except _DATA_ERRORS as err:
            msg = str(err)
            if self._logdir:
                msg = msg.replace(self._logdir.rstrip("/") + "/", "")
            asset = e.index.get("asset", {}) if isinstance(e.index.get("asset"), dict) else {}
            _warn_once((e.run, asset.get("file"), asset.get("offset"), type(err).__name__),
                       "attention: cannot read %s of %s/%s/%s step %s: %s", what, e.run, e.tag, e.example, e.step, msg)
            raise errors.NotFoundError(
                f"the {what} of run {e.run!r}, {e.tag!r}/{e.example!r} step {e.step} cannot be read "
                f"({type(err).__name__}: {msg})") from None

    def attention_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                       layer: int, head: Optional[int] = None) -> np.ndarray:
        """uint8 log8 codes ``(heads, q_len, k_len)``, or ``(1, q_len, k_len)`` for one head."""
        e = self.entry(ctx, experiment, run, tag, example, step)
        k = self._kind(e, kind)
        _check_range("layer", layer, k["layers"])
        _check_range("head", head, k["heads"])
        return self._layer_codes(e, kind, k, layer, head)

    def _layer_codes(self, e: IndexEntry, kind: str, k: dict, layer: int, head: Optional[int] = None,
                     cache: bool = True) -> np.ndarray:
        def load() -> np.ndarray:
            self._check_asset_kind(e, kind)
            return self._store.attention_codes(e, kind, layer, head, cache=cache)

        codes = self._read(e, "attention", load)
        expect = (1 if head is not None else k["heads"], k["q_len"], k["k_len"])
        if codes.shape != expect:  # asset record disagrees with its index record
            self._read(e, "attention", lambda: _raise(fmt.FormatError(
                f"asset record shape {codes.shape} differs from its index record {expect}")))
        return codes

    def _check_asset_kind(self, e: IndexEntry, kind: str) -> None:
        """The asset record describes ``kind`` as its index record does (before serving its chunks as stored)."""
        mine = e.index["kinds"][kind]
        theirs = self._store.record(e).header["kinds"][kind]
        fields = ("layers", "heads", "q_len", "k_len", "overview_shape")
        if any(mine.get(f) != theirs.get(f) for f in fields):
            raise fmt.FormatError(f"asset record shape {[theirs.get(f) for f in fields]} differs from its "
                                  f"index record {[mine.get(f) for f in fields]}")

    def qk_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        """float16 queries ``(q_len, head_dim)`` and keys ``(k_len, head_dim)`` of one head."""
        e = self.entry(ctx, experiment, run, tag, example, step)
        k = self._kind(e, kind)
        _check_range("layer", layer, k["layers"])
        _check_range("head", head, k["heads"])
        if not k.get("has_qk"):
            raise errors.NotFoundError(f"queries/keys were not logged at step {step} of {run!r}/{tag!r}/{example!r}")
        q, kk = self._read(e, "queries/keys", lambda: self._store.qk(e, kind, layer, head))
        return q, kk

    def overview_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int,
                      kind: str) -> np.ndarray:
        """uint8 log8 codes of the pooled overview, ``(layers, heads, pq, pk)``."""
        e = self.entry(ctx, experiment, run, tag, example, step)
        k = self._kind(e, kind)

        def load() -> np.ndarray:
            self._check_asset_kind(e, kind)
            return self._store.overview_codes(e, kind)

        codes = self._read(e, "overview", load)
        expect = (k["layers"], k["heads"], *k["overview_shape"])
        if codes.shape != expect:
            self._read(e, "overview", lambda: _raise(fmt.FormatError(
                f"asset record overview shape {codes.shape} differs from its index record {expect}")))
        return codes

    def metrics_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str,
                     kind: Optional[str] = None) -> dict:
        """Per-head metrics of every step of one example, from the index records (no asset reads):
        ``{"steps": [...], "kinds": {kind: {metric: [per step: [[per head] per layer] or null]}}}``."""
        es = self.example_entries(ctx, experiment, run, tag, example)
        logged = {name for e in es for name in e.index["kinds"]}
        if kind is not None and kind not in logged:
            have = ", ".join(sorted(logged))
            raise errors.NotFoundError(f"no {kind!r} attention in {run!r}/{tag!r}/{example!r} (logged kinds: {have})")
        kinds = [kind] if kind is not None else [k for k in fmt.KINDS if k in logged]
        out = {}
        for kd in kinds:
            per_step = [_metrics_of(e, kd) for e in es]
            names = {n for m in per_step for n in m}
            ordered = [n for n in metrics_mod.METRIC_NAMES if n in names] + sorted(names - set(metrics_mod.METRIC_NAMES))
            out[kd] = {n: [m.get(n) for m in per_step] for n in ordered}
        return {"steps": [e.step for e in es], "kinds": out}

    def divergence_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, kind: str,
                        step_a: int, step_b: int) -> dict:
        """Jensen-Shannon divergence (nats) per layer and head between two steps of one example (cached)."""
        ea = self.entry(ctx, experiment, run, tag, example, step_a)
        eb = self.entry(ctx, experiment, run, tag, example, step_b)
        ka, kb = self._kind(ea, kind), self._kind(eb, kind)
        sa, sb = _kind_shape(ka), _kind_shape(kb)
        if sa != sb:
            raise errors.InvalidArgumentError(
                f"steps {step_a} and {step_b} of {run!r}/{tag!r}/{example!r} have different {kind} shapes "
                f"(layers, heads, q_len, k_len) {sa} and {sb}: the tokens changed, so attention cannot be compared")
        same_tokens = _kind_tokens(ea, ka) == _kind_tokens(eb, kb)
        key = (run, tag, example, kind, *sorted([(step_a, *self._asset_key_of(ea)), (step_b, *self._asset_key_of(eb))]))
        js = self._divergences.get(key)
        if js is None:
            js = []
            for layer in range(sa[0]):
                a = self._layer_codes(ea, kind, ka, layer, cache=False)
                b = a if self._asset_key_of(ea) == self._asset_key_of(eb) else \
                    self._layer_codes(eb, kind, kb, layer, cache=False)
                js.append([_json_float(v) for v in _js_heads(a, b)])
            self._divergences.put(key, js)
        return {"js": js, "unit": "nats", "max": LN2, "same_tokens": same_tokens}

    def rollout_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                     residual: float = 0.5, fusion: str = "mean") -> np.ndarray:
        """Attention rollout over every layer of a self-attention kind: log8 codes ``(1, n, n)`` (cached)."""
        if fusion not in FUSIONS:
            raise errors.InvalidArgumentError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if not 0.0 <= residual <= 1.0:
            raise errors.InvalidArgumentError(f"residual must lie in [0, 1], got {residual}")
        if kind == "cross":
            raise errors.InvalidArgumentError("rollout needs self-attention; cross attention maps decoder "
                                              "queries to encoder keys (use kind=encoder or kind=decoder)")
        e = self.entry(ctx, experiment, run, tag, example, step)
        k = self._kind(e, kind)
        n = k["q_len"]
        if k["k_len"] != n:
            raise errors.InvalidArgumentError(f"rollout needs square self-attention; {kind} attention at step {step} "
                                              f"is {n} queries x {k['k_len']} keys")
        key = ("rollout", self._asset_key_of(e), kind, residual, fusion)
        cached = self._rollouts.get(key)
        if cached is not None:
            return np.frombuffer(cached, np.uint8).reshape(1, n, n)
        fused = [_fuse_heads(self._layer_codes(e, kind, k, layer, cache=False), fusion) for layer in range(k["layers"])]
        codes = fmt.encode_attention(metrics_mod.rollout(fused, residual=residual, head_fusion=fusion)).reshape(1, n, n)
        self._rollouts.put(key, codes.tobytes(), codes.nbytes)
        return codes

    def static_impl(self, relpath: str) -> tuple[bytes, str]:
        """(content, content type) of a file of the built frontend; ``NotFoundError`` for anything else."""
        bad = (not relpath or "\x00" in relpath or "\\" in relpath or relpath.startswith("/")
               or any(p in ("", ".", "..") for p in relpath.split("/")))
        if bad:
            raise errors.NotFoundError(f"no static file {relpath[:80]!r}")
        path = os.path.realpath(os.path.join(self._static_root, *relpath.split("/")))
        if not path.startswith(self._static_root + os.sep) or not os.path.isfile(path):
            raise errors.NotFoundError(f"no static file {relpath[:80]!r}"
                                       + (" (the frontend bundle is not built)" if relpath == "index.js" else ""))
        ext = os.path.splitext(path)[1].lower()
        ctype = _CONTENT_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            return f.read(), ctype

    # ---- routes
    def _binary(self, request: Any, key: Any, codes: np.ndarray, headers: list):
        """Computed uint8 codes as ``application/octet-stream``; gzipped (level 1, cached by ``key``) when the
        client accepts it. q/k (float16) are not compressed: they shrink by less than 10%."""
        body = None
        encoding = None
        if codes.nbytes >= GZIP_MIN_BYTES and _gzip_accepted(request):
            body = self._encoded.get(key + ("gzip",))
            if body is None:
                body = _gzip(np.ascontiguousarray(codes).tobytes())
                self._encoded.put(key + ("gzip",), body, len(body))
            encoding = "gzip"
        else:
            body = np.ascontiguousarray(codes).tobytes()
        return _respond_binary(request, body, encoding, headers)

    def _stored(self, request: Any, e: IndexEntry, kind: str, key: tuple, what: str, shape: tuple,
                chunks: Callable[[], list], codes: Callable[[], np.ndarray], headers: list):
        """Log8 codes that are stored as zlib chunks (attention heads of a layer, the overview), served
        without decompressing and compressing again when the client accepts it: ``deflate`` (every browser
        sends it) is the chunks spliced into one zlib stream; ``gzip`` the same as a gzip member (the chunks
        are decompressed, only for the CRC-32). Chunks written before compress_chunk (no sync flush) are
        decoded and gzipped (level 1) instead. Bodies are cached by ``key``."""
        size = int(np.prod(shape))
        encodings = []
        if size >= GZIP_MIN_BYTES:
            if _deflate_accepted(request):
                encodings.append("deflate")
            if _gzip_accepted(request):
                encodings.append("gzip")
        for enc in encodings:
            body = self._encoded.get(key + (enc,))
            if body is not None:
                return _respond_binary(request, body, enc, headers)
        if encodings:
            sizes = [size // shape[0]] * shape[0] if what == "attention" else [size]  # content of each chunk

            def splice() -> tuple:
                self._check_asset_kind(e, kind)
                stored = chunks()
                for enc in encodings:
                    body = (fmt.splice_zlib if enc == "deflate" else fmt.splice_gzip)(stored, sizes)
                    if body is not None:
                        return body, enc
                return None, None

            body, enc = self._read(e, what, splice)
            if body is None:  # chunks from before compress_chunk: compress the decoded codes
                raw = np.ascontiguousarray(codes()).tobytes()
                enc = "gzip" if "gzip" in encodings else "deflate"
                body = _gzip(raw) if enc == "gzip" else zlib.compress(raw, GZIP_LEVEL)
            self._encoded.put(key + (enc,), body, len(body))
            return _respond_binary(request, body, enc, headers)
        return _respond_binary(request, np.ascontiguousarray(codes()).tobytes(), None, headers)

    def _asset_key_of(self, e: IndexEntry) -> tuple:
        """Where a record's arrays are: a cache key that changes if the step is logged again."""
        asset = e.index["asset"]
        return e.run, asset.get("file"), asset.get("offset")

    def _asset_key(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int) -> tuple:
        return self._asset_key_of(self.entry(ctx, experiment, run, tag, example, step))

    def _common(self, request: Any) -> tuple:
        args = request.args
        run, tag, example = (_required(args, n) for n in ("run", "tag", "example"))
        step = _int_param(args, "step", _INT)
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ), run, tag, example, step

    @_route
    def index_route(self, request):
        ctx = plugin_util.context(request.environ)
        body = self.index_impl(ctx, plugin_util.experiment_id(request.environ))
        return http_util.Respond(request, body, "application/json")

    @_route
    def header_route(self, request):
        return http_util.Respond(request, self.header_impl(*self._common(request)), "application/json")

    @_route
    def attention_route(self, request):
        common = self._common(request)
        kind = _required(request.args, "kind")
        layer = _int_param(request.args, "layer")
        head = _int_param(request.args, "head", required=False)
        e = self.entry(*common)
        k = self._kind(e, kind)
        _check_range("layer", layer, k["layers"])
        _check_range("head", head, k["heads"])
        shape = (1 if head is not None else k["heads"], k["q_len"], k["k_len"])
        return self._stored(request, e, kind, ("attention", self._asset_key_of(e), kind, layer, head), "attention",
                            shape, lambda: self._store.attention_chunks(e, kind, layer, head),
                            lambda: self._layer_codes(e, kind, k, layer, head), _codes_headers(shape))

    @_route
    def qk_route(self, request):
        common = self._common(request)
        kind = _required(request.args, "kind")
        layer = _int_param(request.args, "layer")
        head = _int_param(request.args, "head")
        q, k = self.qk_impl(*common, kind, layer, head)
        body = np.ascontiguousarray(q, dtype="<f2").tobytes() + np.ascontiguousarray(k, dtype="<f2").tobytes()
        return http_util.Respond(request, body, "application/octet-stream",
                                 headers=[("X-QK-Shape", f"{q.shape[0]},{k.shape[0]},{q.shape[1]}")])

    @_route
    def overview_route(self, request):
        common = self._common(request)
        kind = _required(request.args, "kind")
        e = self.entry(*common)
        k = self._kind(e, kind)
        shape = (k["layers"], k["heads"], *k["overview_shape"])
        return self._stored(request, e, kind, ("overview", self._asset_key_of(e), kind), "overview", shape,
                            lambda: [self._store.overview_chunk(e, kind)],
                            lambda: self.overview_impl(*common, kind), _codes_headers(shape))

    @_route
    def metrics_route(self, request):
        args = request.args
        run, tag, example = (_required(args, n) for n in ("run", "tag", "example"))
        kind = args.get("kind") or None
        body = self.metrics_impl(plugin_util.context(request.environ), plugin_util.experiment_id(request.environ),
                                 run, tag, example, kind)
        return http_util.Respond(request, json.dumps(body, separators=(",", ":"), allow_nan=False), "application/json")

    @_route
    def divergence_route(self, request):
        args = request.args
        run, tag, example, kind = (_required(args, n) for n in ("run", "tag", "example", "kind"))
        step_a = _int_param(args, "step_a", _INT)
        step_b = _int_param(args, "step_b", _INT)
        body = self.divergence_impl(plugin_util.context(request.environ), plugin_util.experiment_id(request.environ),
                                    run, tag, example, kind, step_a, step_b)
        return http_util.Respond(request, json.dumps(body, separators=(",", ":"), allow_nan=False), "application/json")

    @_route
    def rollout_route(self, request):
        common = self._common(request)
        kind = _required(request.args, "kind")
        residual = _unit_param(request.args, "residual", 0.5)
        fusion = _choice_param(request.args, "fusion", FUSIONS)
        codes = self.rollout_impl(*common, kind, residual, fusion)
        key = ("rollout", self._asset_key(*common), kind, residual, fusion)
        return self._binary(request, key, codes, _codes_headers(codes.shape))

    @_route
    def index_js_route(self, request):
        content, ctype = self.static_impl("index.js")
        return http_util.Respond(request, content, ctype)

    @_route
    def static_route(self, request):
        marker = f"/{PLUGIN_NAME}/static/"
        path = request.path
        relpath = path[path.find(marker) + len(marker):] if marker in path else ""
        content, ctype = self.static_impl(relpath)
        return http_util.Respond(request, content, ctype)

    @_route
    def not_found_route(self, request):
        raise errors.NotFoundError(f"no attention route {request.path[:120]!r}")


def _lookup(runs: dict, run: str, tag: str, example: str, step: int) -> Optional[IndexEntry]:
    ri = runs.get(run)
    return None if ri is None else ri.entries.get((tag, example, step))


def _raise(err: Exception) -> Any:
    raise err


def _respond_binary(request: Any, body: bytes, encoding: Optional[str], headers: list):
    headers = list(headers) + [("Vary", "Accept-Encoding")]
    return http_util.Respond(request, body, "application/octet-stream", content_encoding=encoding, headers=headers)


def _codes_headers(shape: tuple) -> list:
    return [("X-Attention-Shape", ",".join(map(str, shape))), ("X-Attention-Codec", fmt.CODEC_NAME)]


def _kind_shape(k: dict) -> tuple:
    return k["layers"], k["heads"], k["q_len"], k["k_len"]


def _kind_tokens(e: IndexEntry, k: dict) -> tuple:
    seqs = e.index.get("sequences") or {}
    return seqs.get(k.get("query")), seqs.get(k.get("key"))


def _json_float(v: Any) -> Optional[float]:
    """A finite float, or None (JSON null) for NaN, infinities and anything that is not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _metrics_of(e: IndexEntry, kind: str) -> dict:
    """``{metric: [[per head] per layer]}`` of one record and kind, each grid checked against the kind's
    layers x heads (a malformed grid is None: those values are unavailable, the rest still served)."""
    k = e.index["kinds"].get(kind)
    by_name = (e.index.get("metrics") or {}).get(kind) if isinstance(e.index.get("metrics"), dict) else None
    if k is None or not isinstance(by_name, dict):
        return {}
    out = {}
    for name, grid in by_name.items():
        ok = (isinstance(grid, list) and len(grid) == k["layers"]
              and all(isinstance(row, list) and len(row) == k["heads"] for row in grid))
        out[str(name)] = [[_json_float(v) for v in row] for row in grid] if ok else None
    return out


@functools.lru_cache(maxsize=1)
def _js_table() -> np.ndarray:
    """``T[a * 256 + b]``: the Jensen-Shannon term of one attention weight pair decoded from log8 codes
    ``a`` and ``b`` (``metrics.jensen_shannon`` of one-element rows), so the divergence of two coded layers is
    a table look-up and a sum instead of three logarithms per weight."""
    lut = fmt.LUT.astype(np.float64)
    return metrics_mod.jensen_shannon(np.repeat(lut, 256).reshape(-1, 1, 1), np.tile(lut, 256).reshape(-1, 1, 1))


def _js_heads(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-head ``metrics.jensen_shannon(LUT[a], LUT[b])`` of two coded layers ``(heads, q, k)`` (same values up
    to float rounding: the mean over rows of each row's sum of terms)."""
    table = _js_table()
    heads, q, _ = a.shape
    out = np.empty(heads)
    for h in range(heads):  # one head at a time: the index array is 8 bytes per weight
        idx = (a[h].astype(np.intp) << 8) | b[h]
        out[h] = table.take(idx).sum() / q
    return np.clip(out, 0.0, LN2)


def _fuse_heads(codes: np.ndarray, fusion: str) -> np.ndarray:
    """One layer's heads ``(heads, n, n)`` of codes fused into decoded float64 ``(n, n)`` (as
    ``metrics.rollout`` does with ``head_fusion``; max/min on codes is exact, the codec being monotonic)."""
    if fusion == "max":
        return fmt.LUT[codes.max(axis=0)].astype(np.float64)
    if fusion == "min":
        return fmt.LUT[codes.min(axis=0)].astype(np.float64)
    lut = fmt.LUT.astype(np.float64)
    acc = np.zeros(codes.shape[1:], np.float64)
    for h in range(codes.shape[0]):
        acc += lut[codes[h]]
    return acc / codes.shape[0]
