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
import mimetypes
import os
import weakref
from typing import Any, Callable, Optional

import numpy as np

from tensorboard import context as tb_context
from tensorboard import errors
from tensorboard.plugins import base_plugin

from . import derived, layouts
from . import format as fmt
from . import http_io as web
from . import metrics as metrics_mod
from .metadata import FORMAT_VERSION, PLUGIN_NAME
from .reader import (DATA_ERRORS, LRU, WEIGHTINGS, IndexCache, IndexEntry, RecordStore, RunDirs, RunIndex,
                     warn_once)

DEFAULT_CACHE_MB = 256
# Version of the HTTP API (docs/http-api.md) that /index announces to the frontend; it changes only when the
# served JSON or binary layouts change incompatibly (not with the storage format, which the backend reads).
API_VERSION = 1
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
GZIPPED_CACHE_FRACTION = 8  # compressed bodies are cached in up to 1/8 of --attention_cache_mb (on top of it)
DERIVED_CACHE_FRACTION = 16  # rollout codes: up to 1/16 of --attention_cache_mb (on top of it)
DIVERGENCE_CACHE_ITEMS = 256  # /divergence results (a few KB each)
MAX_WINDOW_VALUES = 1 << 22  # one /window: 4 M values (16 MB as float32), e.g. 2048 x 2048
MAX_PYRAMID_LEVEL = 9  # 512 >> 9 == 1
PYRAMID_AGGS = ("mean", "max")  # /pyramid?agg=: the mean weight per cell, or the largest (format v5)
MAX_HEAD_EXAMPLES = 1000  # /headexamples: at most this many examples per request
LN2 = derived.LN2

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
def public_header(index: dict) -> dict:
    """A record header as served: without the asset location and index checksum (implementation details)."""
    return {k: v for k, v in index.items() if k not in ("asset", "chunks", fmt.INDEX_CRC_KEY)}


def _has_qk(e: IndexEntry) -> bool:
    return any(k.get("has_qk") for k in e.index.get("kinds", {}).values())


def run_json(examples: dict) -> list:
    """The ``tags`` list of one run in ``/index``, from ``RunIndex.examples`` (``reader.by_example``)."""
    by_tag: dict = {}
    for (tag, example), es in examples.items():
        by_tag.setdefault(tag, {})[example] = es
    return [{"tag": tag, "examples": [{
        "example": example,
        "steps": [e.step for e in es],
        "revisions": [e.revision for e in es],
        "qk_steps": [e.step for e in es if _has_qk(e)],
        "header": public_header(es[-1].index),
    } for example, es in sorted(by_tag[tag].items(), key=lambda kv: derived.natural_order(kv[0]))]} for tag in sorted(by_tag)]


@functools.lru_cache(maxsize=1)
def codec_json() -> dict:
    """The ``codec`` of ``/index``: the log8 table the frontend decodes attention bytes with."""
    # Shortest decimal that round-trips through float32, so Float32Array(lut) reproduces LUT exactly.
    return {"name": fmt.CODEC_NAME, "lut": [float(np.format_float_positional(v, unique=True)) for v in fmt.LUT]}


def index_json(runs: dict, unreadable: list = ()) -> dict:
    """The ``/index`` body (docs/http-api.md): ``runs`` maps a run name to its :func:`run_json` (in order),
    ``unreadable`` lists ``reader.Unreadable``. The notebook pages embed the same."""
    return {
        "version": API_VERSION,
        "format_version": FORMAT_VERSION,
        "codec": codec_json(),
        "limits": dict(fmt.LIMITS),
        "runs": [{"run": run, "tags": tags} for run, tags in runs.items()],
        "unreadable": [{"run": u.run, "tag": u.tb_tag, "reason": u.reason, "newer_version": u.newer_version}
                       for u in unreadable],
    }


# ---------------------------------------------------------------------------------------------- plugin
class AttentionPlugin(base_plugin.TBPlugin):
    """Serves logged attention: the index, one layer / one head's q/k / the overview per request."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._data_provider = context.data_provider
        logdir = context.logdir or ""
        if getattr(context.flags, "logdir_spec", None) and not getattr(context.flags, "logdir", None):
            logdir = ""  # context.logdir is then the spec itself; runs are found through the multiplexer
        self._logdir = os.path.expanduser(logdir) if logdir and "://" not in logdir else logdir
        flags = context.flags
        cache_mb = getattr(flags, "attention_cache_mb", DEFAULT_CACHE_MB) if flags is not None else DEFAULT_CACHE_MB
        if not isinstance(cache_mb, int) or cache_mb < 0:
            cache_mb = DEFAULT_CACHE_MB
        # The same reading path as read_attention: run directories as TensorBoard resolved them (the
        # multiplexer's, under the Python loader and --logdir_spec), records checked against their index.
        self._store = RecordStore(RunDirs(self._logdir, context.multiplexer), cache_bytes=cache_mb << 20)
        # compressed attention bodies (~10-25x smaller than the codes): a warm request costs no compression
        self._bodies = web.EncodedBodies(LRU((cache_mb << 20) // GZIPPED_CACHE_FRACTION))  # cached by bytes
        self._rollouts = LRU((cache_mb << 20) // DERIVED_CACHE_FRACTION)  # rollout codes, by bytes
        self._divergences = LRU(DIVERGENCE_CACHE_ITEMS if cache_mb else 0)  # by items
        self._index = IndexCache(self._data_provider)
        self._run_jsons: "weakref.WeakKeyDictionary[RunIndex, list]" = weakref.WeakKeyDictionary()  # /index "tags"
        # head scores of a tag (stacked per step on first use), built once per RunIndex and dropped with it
        self._tag_scores: "weakref.WeakKeyDictionary[RunIndex, dict]" = weakref.WeakKeyDictionary()
        self._static_root = os.path.realpath(STATIC_DIR)

    # ---- TBPlugin
    def get_plugin_apps(self):
        return {
            "/index": self.index_route,
            "/header": self.header_route,
            "/attention": self.attention_route,
            "/qk": self.qk_route,
            "/overview": self.overview_route,
            "/image": self.image_route,
            "/window": self.window_route,
            "/pyramid": self.pyramid_route,
            "/topk": self.topk_route,
            "/metrics": self.metrics_route,
            "/divergence": self.divergence_route,
            "/rollout": self.rollout_route,
            "/headscores": self.headscores_route,
            "/headtrend": self.headtrend_route,
            "/headexamples": self.headexamples_route,
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

    # ---- lookups
    def entry(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int) -> IndexEntry:
        """The index entry of one example at one step; ``NotFoundError`` saying which part is unknown."""
        for fresh in (False, True):  # on a miss, maybe logged since the cached snapshot
            runs = self._index.get(ctx, experiment, fresh=fresh)
            ri = runs.get(run)
            e = ri.entries.get((tag, example, step)) if ri is not None else None
            if e is not None:
                return e
        self._raise_unknown(runs, run, tag, example)
        raise errors.NotFoundError(f"example {example!r} of {run!r}/{tag!r} has no step {step}")

    def example_entries(self, ctx: Any, experiment: str, run: str, tag: str, example: str) -> list:
        """Every step's index entry of one example, by step; ``NotFoundError`` saying which part is unknown."""
        for fresh in (False, True):
            runs = self._index.get(ctx, experiment, fresh=fresh)
            ri = runs.get(run)
            es = ri.examples.get((tag, example)) if ri is not None else None
            if es:
                return es
        self._raise_unknown(runs, run, tag, example)
        raise errors.NotFoundError(f"tag {tag!r} of run {run!r} has no example {example!r}")  # pragma: no cover

    @staticmethod
    def _raise_unknown(runs: dict, run: str, tag: str, example: str) -> None:
        ri = runs.get(run)
        if ri is None:
            raise errors.NotFoundError(f"unknown run {run!r}")
        if not any(t == tag for t, _ in ri.examples):
            raise errors.NotFoundError(f"run {run!r} has no attention tag {tag!r}")
        if (tag, example) not in ri.examples:
            raise errors.NotFoundError(f"tag {tag!r} of run {run!r} has no example {example!r}")

    @staticmethod
    def _kind(e: IndexEntry, kind: str) -> dict:
        try:
            return derived.kind_of(e, kind)
        except derived.KindNotLogged as err:
            raise errors.NotFoundError(str(err)) from None

    @staticmethod
    def _check_route(route: str, k: dict, kind: str, step: int) -> layouts.Layout:
        """The layout of a stored kind, if ``route`` can serve it (``InvalidArgumentError`` otherwise)."""
        layout = layouts.of_kind(k)
        problem = layout.route_problem(route, kind, step, k)
        if problem:
            raise errors.InvalidArgumentError(problem)
        return layout

    def _read(self, e: IndexEntry, what: str, load: Callable[[], Any]) -> Any:
        """Run ``load``; unreadable data becomes a 404 for this request only (logged once per record)."""
        try:
            return load()
        except DATA_ERRORS as err:
            msg = str(err)
            if self._logdir:
                msg = msg.replace(self._logdir.rstrip("/") + "/", "")
            warn_once((e.asset_key, type(err).__name__),
                      "attention: cannot read %s of %s/%s/%s step %s: %s", what, e.run, e.tag, e.example, e.step, msg)
            raise errors.NotFoundError(
                f"the {what} of run {e.run!r}, {e.tag!r}/{e.example!r} step {e.step} cannot be read "
                f"({type(err).__name__}: {msg})") from None

    def _layer_codes(self, e: IndexEntry, kind: str, layer: int, head: Optional[int] = None,
                     cache: bool = True) -> np.ndarray:
        return self._read(e, "attention", lambda: self._store.attention_codes(e, kind, layer, head, cache=cache))

    # ---- impls (what the routes serve; tests call these directly)
    def index_impl(self, ctx: Any, experiment: str) -> dict:
        """Every run's tags, examples and steps (with each step's revision), and what could not be read."""
        runs = self._index.get(ctx, experiment, fresh=True)
        return index_json({run: self._run_json(runs[run]) for run in sorted(runs) if runs[run].examples},
                          [u for run in sorted(runs) for u in runs[run].unreadable])

    def _run_json(self, ri: RunIndex) -> list:
        """``run_json`` of a run, built once per RunIndex (they are replaced, never changed) and dropped with it."""
        listing = self._run_jsons.get(ri)
        if listing is None:
            listing = self._run_jsons[ri] = run_json(ri.examples)
        return listing

    def header_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int) -> dict:
        return public_header(self.entry(ctx, experiment, run, tag, example, step).index)

    def attention_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                       layer: int, head: Optional[int] = None, weighting: str = "weights") -> np.ndarray:
        """uint8 log8 codes ``(heads, q_len, k_len)``, or ``(1, q_len, k_len)`` for one head; value-weighted
        (``metrics.value_weighted``) when ``weighting="value"``."""
        e, k = self._layer_entry(ctx, experiment, run, tag, example, step, kind, layer, head)
        self._check_route("attention", k, kind, step)
        codes = self._layer_codes(e, kind, layer, head)
        if self._check_weighting(weighting, "attention", k, kind, step) == "weights":
            return codes
        norms = self._read(e, "value norms", lambda: self._store.value_norms(e, kind, layer))
        norms = norms if head is None else norms[head:head + 1]
        return fmt.encode_attention(metrics_mod.value_weighted(fmt.decode_attention(codes), norms))

    @staticmethod
    def _check_weighting(weighting: str, route: str, k: dict, kind: str, step: int) -> str:
        """``weighting`` if ``route`` can serve it for this kind (404 without value norms, 400 for what a long
        layer stores pooled)."""
        if weighting not in WEIGHTINGS:
            raise errors.InvalidArgumentError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting[:40]!r}")
        if weighting == "value":
            if not k.get("has_value_norms"):
                raise errors.NotFoundError(f"{kind} attention at step {step} has no value norms (log it with "
                                           "capture_attention(values=True))")
            if route in ("overview", "pyramid", "topk") and k.get("layout") == fmt.LAYOUT_LONG:
                raise errors.InvalidArgumentError(f"the {route} of a long layer holds the weights only: ask /window "
                                                  "for exact value-weighted rows")
        return weighting

    def _layer_entry(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                     layer: int, head: Optional[int]) -> tuple:
        e = self.entry(ctx, experiment, run, tag, example, step)
        k = self._kind(e, kind)
        web.check_range("layer", layer, k["layers"])
        web.check_range("head", head, k["heads"])
        return e, k

    def qk_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        """float16 queries ``(q_len, head_dim)`` and keys ``(k_len, head_dim)`` of one head."""
        e, k = self._layer_entry(ctx, experiment, run, tag, example, step, kind, layer, head)
        if not k.get("has_qk"):
            raise errors.NotFoundError(f"queries/keys were not logged at step {step} of {run!r}/{tag!r}/{example!r}")
        layout = layouts.of_kind(k)
        return self._read(e, "queries/keys", lambda: layout.served_qk(self._store, e, kind, layer, head))

    def overview_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int,
                      kind: str, weighting: str = "weights") -> np.ndarray:
        """uint8 log8 codes of the pooled overview, ``(layers, heads, pq, pk)`` (of the value-weighted attention,
        pooled as the writer pools, for ``weighting="value"``: dense kinds only)."""
        e = self.entry(ctx, experiment, run, tag, example, step)
        k = self._kind(e, kind)
        if self._check_weighting(weighting, "overview", k, kind, step) == "weights":
            return self._read(e, "overview", lambda: self._store.overview_codes(e, kind))

        def pooled() -> np.ndarray:
            return np.stack([fmt.pool_overview(metrics_mod.value_weighted(
                fmt.decode_attention(self._store.attention_codes(e, kind, layer, cache=False)),
                self._store.value_norms(e, kind, layer))) for layer in range(k["layers"])])
        return fmt.encode_attention(self._read(e, "overview", pooled))

    def image_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int) -> tuple[bytes, str]:
        """(bytes, mime type) of the record's image (format v4); ``NotFoundError`` when it has none or it cannot
        be read (a corrupt image costs only this route: the record's attention is served as usual)."""
        e = self.entry(ctx, experiment, run, tag, example, step)
        if "image" not in e.index:
            raise errors.NotFoundError(f"{tag!r}/{example!r} of run {run!r} at step {step} has no image")
        return self._read(e, "image", lambda: self._store.image(e)), e.index["image"]["mime"]

    def window_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                    layer: int, head: int, rows: tuple, cols: tuple, weighting: str = "weights") -> np.ndarray:
        """One head's attention over ``rows`` x ``cols`` (half-open token ranges), float32: exact from q/k for
        a long layer, the stored values for a dense one."""
        e, k = self._layer_entry(ctx, experiment, run, tag, example, step, kind, layer, head)
        for name, (a, b), length in (("rows", rows, k["q_len"]), ("cols", cols, k["k_len"])):
            if not 0 <= a < b <= length:
                raise errors.InvalidArgumentError(f"{name} {a}:{b} is not a non-empty range within 0:{length}")
        if (rows[1] - rows[0]) * (cols[1] - cols[0]) > MAX_WINDOW_VALUES:
            raise errors.InvalidArgumentError(f"a window holds at most {MAX_WINDOW_VALUES} values; ask for less "
                                              "(or use /pyramid for the whole head)")
        problem = layouts.of_kind(k).window_problem(kind, layer, step, k)
        if problem:
            raise errors.NotFoundError(problem)
        self._check_weighting(weighting, "window", k, kind, step)
        return self._read(e, "window", lambda: self._store.window(e, kind, layer, head, rows, cols, weighting))

    def _route_entry(self, route: str, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int,
                     kind: str, layer: int, head: Optional[int]) -> tuple:
        """(entry, kind header) of one head, if ``route`` can serve its layout."""
        e, k = self._layer_entry(ctx, experiment, run, tag, example, step, kind, layer, head)
        self._check_route(route, k, kind, step)
        return e, k

    def pyramid_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                     layer: int, head: int, level: int = 0, agg: str = "mean") -> np.ndarray:
        """Pooled attention of one head of a long layer as log8 codes ``(1, bq, bk)``: level 0 as stored
        (up to 512 x 512), each level above it halves the bins per side; each cell the mean weight of its
        block, or with ``agg="max"`` its largest weight (format v5)."""
        e, k = self._pyramid_entry(ctx, experiment, run, tag, example, step, kind, layer, head, agg)
        if not 0 <= level <= MAX_PYRAMID_LEVEL:
            raise errors.InvalidArgumentError(f"level must be in 0..{MAX_PYRAMID_LEVEL}, got {level}")
        return fmt.encode_attention(self._read(e, "pyramid", lambda: self._store.pyramid(e, kind, layer, head, level,
                                                                                         agg)))[None]

    def _pyramid_entry(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                       layer: int, head: int, agg: str) -> tuple:
        if agg not in PYRAMID_AGGS:
            raise errors.InvalidArgumentError(f"agg must be one of {', '.join(PYRAMID_AGGS)}, got {agg[:40]!r}")
        e, k = self._route_entry("pyramid", ctx, experiment, run, tag, example, step, kind, layer, head)
        if agg == "max" and not k.get("pyramid_max"):
            raise errors.NotFoundError(f"{kind} attention at step {step} stores only the mean pyramid (logged "
                                       "before format v5)")
        return e, k

    def topk_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                  layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's largest weights of one head of a long layer: key indices ``(q_len, K)`` uint32 and log8
        codes ``(q_len, K)``, descending."""
        e, _ = self._route_entry("topk", ctx, experiment, run, tag, example, step, kind, layer, head)
        return self._read(e, "top-k", lambda: self._store.topk(e, kind, layer, head))

    def metrics_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str,
                     kind: Optional[str] = None) -> dict:
        """Per-head metrics of every step of one example, from the index records (no asset reads):
        ``{"steps": [...], "kinds": {kind: {metric: [per step: [[per head] per layer] or null]}}}``."""
        es = self.example_entries(ctx, experiment, run, tag, example)
        try:
            return derived.example_metrics(es, kind, where=f"{run!r}/{tag!r}/{example!r}")
        except derived.KindNotLogged as err:
            raise errors.NotFoundError(str(err)) from None

    def divergence_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, kind: str,
                        step_a: int, step_b: int) -> dict:
        """Jensen-Shannon divergence (nats) per layer and head between two steps of one example (cached):
        ``derived.divergence``."""
        ea = self.entry(ctx, experiment, run, tag, example, step_a)
        eb = self.entry(ctx, experiment, run, tag, example, step_b)
        self._kind(ea, kind)
        self._kind(eb, kind)
        problem = derived.divergence_problem(ea, eb, kind)
        if problem:
            raise errors.InvalidArgumentError(f"{run!r}/{tag!r}/{example!r}: {problem}")
        key = (kind, *sorted([ea.asset_key, eb.asset_key]))
        body = self._divergences.get(key)
        if body is None:
            body = derived.divergence(self._store, ea, eb, kind, read=self._read)
            self._divergences.put(key, body)
        return body

    def rollout_impl(self, ctx: Any, experiment: str, run: str, tag: str, example: str, step: int, kind: str,
                     residual: float = 0.5, fusion: str = "mean") -> np.ndarray:
        """Attention rollout over every layer of a self-attention kind: log8 codes ``(1, n, n)`` (cached):
        ``derived.rollout``."""
        problem = derived.rollout_argument_problem(kind, residual, fusion)
        if problem:
            raise errors.InvalidArgumentError(problem)
        e = self.entry(ctx, experiment, run, tag, example, step)
        self._kind(e, kind)
        problem = derived.rollout_problem(e, kind)
        if problem:
            raise errors.InvalidArgumentError(problem)
        key = ("rollout", e.asset_key, kind, residual, fusion)
        cached = self._rollouts.get(key)
        if cached is not None:
            return np.frombuffer(cached, np.uint8).reshape(derived.rollout_shape(e, kind))
        codes = derived.rollout(self._store, e, kind, residual, fusion, read=self._read)
        self._rollouts.put(key, codes.tobytes(), codes.nbytes)
        return codes

    def tag_scores(self, ctx: Any, experiment: str, run: str, tag: str, kind: Optional[str] = None) -> derived.TagScores:
        """The head scores of one tag (``derived.TagScores``), kept with the run's index snapshot."""
        for fresh in (False, True):
            runs = self._index.get(ctx, experiment, fresh=fresh)
            ri = runs.get(run)
            if ri is not None and any(t == tag for t, _ in ri.examples):
                break
        else:
            if ri is None:
                raise errors.NotFoundError(f"unknown run {run!r}")
            raise errors.NotFoundError(f"run {run!r} has no attention tag {tag!r}")
        by_tag = self._tag_scores.setdefault(ri, {})
        key = (tag, kind)
        if key not in by_tag:
            try:
                by_tag[key] = derived.TagScores(ri.examples, tag, kind)
            except derived.DerivedError as err:  # a kind not logged in this tag
                raise errors.NotFoundError(str(err)) from None
        return by_tag[key]

    def headscores_impl(self, ctx: Any, experiment: str, run: str, tag: str, step: int,
                        kind: Optional[str] = None) -> dict:
        """Each metric's mean, std, min, max and n per head over the tag's examples at ``step``, from the index
        records (``derived.TagScores.at``)."""
        scores = self.tag_scores(ctx, experiment, run, tag, kind)
        if step not in scores.steps:
            raise errors.NotFoundError(f"tag {tag!r} of run {run!r} has no step {step}")
        return {"run": run, **scores.at(step)}

    def headtrend_impl(self, ctx: Any, experiment: str, run: str, tag: str, kind: Optional[str] = None) -> dict:
        """Each metric's mean and std per head at every step of the tag (``derived.TagScores.trend``)."""
        return {"run": run, **self.tag_scores(ctx, experiment, run, tag, kind).trend()}

    def headexamples_impl(self, ctx: Any, experiment: str, run: str, tag: str, step: int, metric: str, layer: int,
                          head: int, kind: Optional[str] = None, limit: int = 10) -> dict:
        """The examples where one head scores highest on ``metric`` at ``step`` (``derived.TagScores.top_examples``)."""
        scores = self.tag_scores(ctx, experiment, run, tag, kind)
        if step not in scores.steps:
            raise errors.NotFoundError(f"tag {tag!r} of run {run!r} has no step {step}")
        if not 1 <= limit <= MAX_HEAD_EXAMPLES:
            raise errors.InvalidArgumentError(f"limit must be in 1..{MAX_HEAD_EXAMPLES}, got {limit}")
        try:
            return {"run": run, "tag": tag, "kind": scores.kind,
                    **scores.top_examples(step, metric, layer, head, limit)}
        except derived.DerivedError as err:
            raise errors.InvalidArgumentError(str(err)) from None

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

    # ---- routes: parse, call the impl, respond
    @staticmethod
    def _common(request: Any) -> tuple:
        args = request.args
        run, tag, example = (web.required(args, n) for n in ("run", "tag", "example"))
        return (*web.request_context(request), run, tag, example, web.step_param(args))

    @classmethod
    def _head_params(cls, request: Any) -> tuple:
        """(common, kind, layer, head) of a route about one head."""
        args = request.args
        return cls._common(request), web.required(args, "kind"), web.uint_param(args, "layer"), web.uint_param(args, "head")

    @staticmethod
    def _refuse_weighting(request: Any, route: str) -> None:
        if web.choice_param(request.args, "weighting", WEIGHTINGS) != "weights":
            raise errors.InvalidArgumentError(f"/{route} holds the weights only: ask /window for exact "
                                              "value-weighted rows")

    @web.route
    def index_route(self, request):
        return web.respond_json(request, self.index_impl(*web.request_context(request)))

    @web.route
    def header_route(self, request):
        return web.respond_json(request, self.header_impl(*self._common(request)))

    @web.route
    def attention_route(self, request):
        common = self._common(request)
        kind = web.required(request.args, "kind")
        layer = web.uint_param(request.args, "layer")
        head = web.uint_param(request.args, "head", required=False)
        weighting = web.choice_param(request.args, "weighting", WEIGHTINGS)
        if weighting != "weights":
            codes = self.attention_impl(*common, kind, layer, head, weighting)
            key = ("attention", self.entry(*common).asset_key, kind, layer, head, weighting)
            return self._bodies.codes(request, key, codes, web.codes_headers(codes.shape, fmt.CODEC_NAME))
        e, k = self._layer_entry(*common, kind, layer, head)
        self._check_route("attention", k, kind, common[-1])
        shape = (1 if head is not None else k["heads"], k["q_len"], k["k_len"])
        return self._bodies.stored(request, ("attention", e.asset_key, kind, layer, head), shape, shape[0],
                                   lambda splice: self._read(e, "attention", splice),
                                   lambda: self._store.attention_chunks(e, kind, layer, head),
                                   lambda: self._layer_codes(e, kind, layer, head))

    @web.route
    def qk_route(self, request):
        common, kind, layer, head = self._head_params(request)
        q, k = self.qk_impl(*common, kind, layer, head)
        body = np.ascontiguousarray(q, dtype="<f2").tobytes() + np.ascontiguousarray(k, dtype="<f2").tobytes()
        return web.respond_binary(request, body, None, [("X-QK-Shape", f"{q.shape[0]},{k.shape[0]},{q.shape[1]}")])

    @web.route
    def overview_route(self, request):
        common = self._common(request)
        kind = web.required(request.args, "kind")
        weighting = web.choice_param(request.args, "weighting", WEIGHTINGS)
        if weighting != "weights":
            codes = self.overview_impl(*common, kind, weighting)
            key = ("overview", self.entry(*common).asset_key, kind, weighting)
            return self._bodies.codes(request, key, codes, web.codes_headers(codes.shape, fmt.CODEC_NAME))
        e = self.entry(*common)
        k = self._kind(e, kind)
        shape = (k["layers"], k["heads"], *k["overview_shape"])
        return self._bodies.stored(request, ("overview", e.asset_key, kind), shape, 1,
                                   lambda splice: self._read(e, "overview", splice),
                                   lambda: [self._store.overview_chunk(e, kind)],
                                   lambda: self.overview_impl(*common, kind))

    @web.route
    def image_route(self, request):
        body, mime = self.image_impl(*self._common(request))
        return web.respond_image(request, body, mime)

    @web.route
    def window_route(self, request):
        common, kind, layer, head = self._head_params(request)
        args = request.args
        rows, cols = web.span_param(args, "rows"), web.span_param(args, "cols")
        dtype = web.choice_param(args, "dtype", ("log8", "float32"))
        weighting = web.choice_param(args, "weighting", WEIGHTINGS)
        values = self.window_impl(*common, kind, layer, head, rows, cols, weighting)
        e = self.entry(*common)
        key = ("window", e.asset_key, kind, layer, head, rows, cols, dtype, weighting)
        if dtype == "float32":
            return self._bodies.codes(request, key, np.ascontiguousarray(values[None], "<f4").view(np.uint8),
                                [("X-Attention-Shape", f"1,{values.shape[0]},{values.shape[1]}"),
                                 ("X-Attention-Dtype", "float32")])
        codes = fmt.encode_attention(values, first_key=cols[0])[None]  # a tile codes a weight as its row does
        return self._bodies.codes(request, key, codes, web.codes_headers(codes.shape, fmt.CODEC_NAME))

    @web.route
    def pyramid_route(self, request):
        common, kind, layer, head = self._head_params(request)
        self._refuse_weighting(request, "pyramid")
        level = web.uint_param(request.args, "level", required=False) or 0
        agg = web.choice_param(request.args, "agg", PYRAMID_AGGS)
        if level == 0:  # as stored: the chunk itself, spliced or decoded like /attention's
            e, k = self._pyramid_entry(*common, kind, layer, head, agg)
            shape = (1, *k["pyramid_shape"])
            return self._bodies.stored(request, ("pyramid", agg, e.asset_key, kind, layer, head), shape, 1,
                                       lambda splice: self._read(e, "pyramid", splice),
                                       lambda: [self._store.pyramid_chunk(e, kind, layer, head, agg)],
                                       lambda: self.pyramid_impl(*common, kind, layer, head, 0, agg))
        codes = self.pyramid_impl(*common, kind, layer, head, level, agg)
        key = ("pyramid", agg, self.entry(*common).asset_key, kind, layer, head, level)
        return self._bodies.codes(request, key, codes, web.codes_headers(codes.shape, fmt.CODEC_NAME))

    @web.route
    def topk_route(self, request):
        common, kind, layer, head = self._head_params(request)
        self._refuse_weighting(request, "topk")
        index, codes = self.topk_impl(*common, kind, layer, head)
        body = np.ascontiguousarray(index, "<u4").tobytes() + np.ascontiguousarray(codes).tobytes()
        key = ("topk", self.entry(*common).asset_key, kind, layer, head)
        return self._bodies.codes(request, key, np.frombuffer(body, np.uint8),
                            [("X-TopK-Shape", f"{index.shape[0]},{index.shape[1]}"),
                             ("X-Attention-Codec", fmt.CODEC_NAME)])

    @web.route
    def metrics_route(self, request):
        args = request.args
        run, tag, example = (web.required(args, n) for n in ("run", "tag", "example"))
        kind = args.get("kind") or None
        return web.respond_json(request, self.metrics_impl(*web.request_context(request), run, tag, example, kind))

    @web.route
    def divergence_route(self, request):
        args = request.args
        run, tag, example, kind = (web.required(args, n) for n in ("run", "tag", "example", "kind"))
        step_a, step_b = web.step_param(args, "step_a"), web.step_param(args, "step_b")
        body = self.divergence_impl(*web.request_context(request), run, tag, example, kind, step_a, step_b)
        return web.respond_json(request, body)

    @web.route
    def rollout_route(self, request):
        common = self._common(request)
        kind = web.required(request.args, "kind")
        residual = web.unit_param(request.args, "residual", 0.5)
        fusion = web.choice_param(request.args, "fusion", metrics_mod.FUSIONS)
        codes = self.rollout_impl(*common, kind, residual, fusion)
        e = self.entry(*common)
        key = ("rollout", e.asset_key, kind, residual, fusion)
        source = layouts.of_kind(e.index["kinds"][kind]).source
        return self._bodies.codes(request, key, codes, web.codes_headers(codes.shape, fmt.CODEC_NAME)
                            + [("X-Attention-Source", source)])

    @staticmethod
    def _tag_params(request: Any) -> tuple:
        """(context, run, tag) and the optional kind of a route about one tag."""
        args = request.args
        return (*web.request_context(request), web.required(args, "run"), web.required(args, "tag")), args.get("kind") or None

    @web.route
    def headscores_route(self, request):
        common, kind = self._tag_params(request)
        return web.respond_json(request, self.headscores_impl(*common, web.step_param(request.args), kind))

    @web.route
    def headtrend_route(self, request):
        common, kind = self._tag_params(request)
        return web.respond_json(request, self.headtrend_impl(*common, kind))

    @web.route
    def headexamples_route(self, request):
        common, kind = self._tag_params(request)
        args = request.args
        limit = web.uint_param(args, "limit", required=False)
        return web.respond_json(request, self.headexamples_impl(
            *common, web.step_param(args), web.required(args, "metric"), web.uint_param(args, "layer"),
            web.uint_param(args, "head"), kind, 10 if limit is None else limit))

    @web.route
    def index_js_route(self, request):
        content, ctype = self.static_impl("index.js")
        return web.respond_static(request, content, ctype)

    @web.route
    def static_route(self, request):
        marker = f"/{PLUGIN_NAME}/static/"
        path = request.path
        relpath = path[path.find(marker) + len(marker):] if marker in path else ""
        content, ctype = self.static_impl(relpath)
        return web.respond_static(request, content, ctype)

    @web.route
    def not_found_route(self, request):
        raise errors.NotFoundError(f"no attention route {request.path[:120]!r}")
