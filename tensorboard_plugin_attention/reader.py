"""Reading attention: the index from TensorBoard's data provider, arrays from the asset files by offset.

The plugin backend and ``read_attention`` (for notebooks and scripts) share everything here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from . import format as fmt
from . import layouts, storage
from .layouts import exact_window  # noqa: F401 - re-exported (the one recompute of stored attention)
from .metadata import PLUGIN_NAME, NewerVersionError, parse_plugin_metadata

logger = logging.getLogger(__name__)

__all__ = ["read_attention", "iter_attention", "AttentionExample", "IndexEntry", "IndexCache", "LRU", "RecordStore",
           "RunDirs", "list_index", "decode", "open_logdir"]


# What makes one record's arrays unreadable (missing, truncated or corrupt asset file, a chunk table or
# header that disagrees with its index record, a newer version): skip or 404 that record, keep the others.
DATA_ERRORS = (fmt.FormatError, OSError, ValueError, KeyError, IndexError, TypeError, zlib.error)

INDEX_TTL_S = 1.0  # within a burst of requests, reuse the index without asking the data provider again
MAX_EXPERIMENTS = 8  # index snapshots kept (clients choose experiment ids; the local providers ignore them)


@dataclass(frozen=True)
class IndexEntry:
    """One index record: an example of a tag at a step, and where its arrays are."""

    run: str
    tag: str
    example: str
    step: int
    wall_time: float
    index: dict  # the record header without its chunk table, plus "asset": {file, offset, length}

    @property
    def asset_key(self) -> tuple:
        """Where the record's arrays are: changes whenever the step is logged again (a cache key)."""
        asset = self.index["asset"]
        return self.run, asset.get("file"), asset.get("offset")

    @property
    def revision(self) -> str:
        """A short opaque name of :attr:`asset_key`, served so that clients can key their caches by it."""
        return "%08x" % fmt.crc32c(repr(self.asset_key).encode("utf-8", "backslashreplace"))


_warned: set = set()


def warn_once(key: Any, msg: str, *args: Any) -> None:
    """``logger.warning`` once per ``key`` (damaged records are reported once, not per request)."""
    if key not in _warned:
        _warned.add(key)
        logger.warning(msg, *args)


@dataclass(frozen=True)
class Unreadable:
    """A TensorBoard tag (or some of its records) that was skipped, and why."""

    run: str
    tb_tag: str
    reason: str
    newer_version: bool  # written by a newer plugin: upgrading the plugin would read it


def list_index(data_provider: Any, ctx: Any, experiment_id: str = "", run: Optional[str] = None,
               unreadable: Optional[list] = None) -> list[IndexEntry]:
    """Every readable index record (all steps), through the data-provider API only.

    Unreadable tags or records (unknown version, corrupt payload or checksum, missing fields) are skipped,
    logged once and, when ``unreadable`` is a list, reported into it (one :class:`Unreadable` per tag).
    """
    runs = None if run is None else [run]
    from tensorboard.data import provider as dp

    skipped: dict = {}

    def skip(r: str, tb_tag: str, step: Optional[int], err: Exception) -> None:
        where = f"{r}/{tb_tag}" + ("" if step is None else f" step {step}")
        warn_once((r, tb_tag, step, str(err)), "attention: skipping %s: %s", where, err)
        skipped.setdefault((r, tb_tag), Unreadable(r, tb_tag, str(err), isinstance(err, NewerVersionError)))

    listing = data_provider.list_tensors(ctx, experiment_id=experiment_id, plugin_name=PLUGIN_NAME,
                                         run_tag_filter=dp.RunTagFilter(runs=runs))
    wanted: dict[str, list[str]] = {}
    meta: dict[tuple[str, str], dict] = {}
    for r, tags in listing.items():
        for tb_tag, ts in tags.items():
            try:
                meta[(r, tb_tag)] = parse_plugin_metadata(ts.plugin_content)
            except ValueError as e:
                skip(r, tb_tag, None, e)
                continue
            wanted.setdefault(r, []).append(tb_tag)
    out = []
    shared: dict = {}  # (run, tag, example) -> the repeated fields of its latest entry (share_repeated)
    if wanted:
        data = data_provider.read_tensors(
            ctx, experiment_id=experiment_id, plugin_name=PLUGIN_NAME,
            run_tag_filter=dp.RunTagFilter(runs=list(wanted),
                                           tags=sorted({t for ts in wanted.values() for t in ts})),
            downsample=2**31 - 1,
        )
        for r, tags in data.items():
            for tb_tag, datums in tags.items():
                m = meta.get((r, tb_tag))
                if m is None:
                    continue
                for d in datums:
                    try:
                        payload = d.numpy.item() if hasattr(d.numpy, "item") else d.numpy
                        index = fmt.parse_index_payload(payload if isinstance(payload, bytes) else bytes(payload))
                        if (index.get("tag"), index.get("example")) != (m["tag"], m["example"]):
                            raise fmt.FormatError("index record names another tag/example than its metadata")
                    except (ValueError, TypeError) as e:
                        skip(r, tb_tag, int(d.step), e)
                        continue
                    share_repeated(shared.setdefault((r, m["tag"], m["example"]), {}), index)
                    out.append(IndexEntry(r, m["tag"], m["example"], int(d.step), float(d.wall_time), index))
    out.sort(key=lambda e: (e.run, e.tag, e.example, e.step))
    if unreadable is not None:
        unreadable.extend(skipped[k] for k in sorted(skipped))
    return out


_REPEATED = ("sequences", "kinds", "special_tokens", "model", "sentence_b_start")


def share_repeated(seen: dict, index: dict) -> None:
    """Let the steps of one example share the fields they repeat (tokens, layer facts): held once, not once
    per step. An index of 20,000 records held ~37 KB of Python objects per record, half of it tokens and layer
    facts equal across steps. ``seen`` holds the example's latest values; equal values become the same object
    (entries are never mutated)."""
    for key in _REPEATED:
        value = index.get(key)
        old = seen.get(key)
        if old is not None and old == value:
            index[key] = old
        elif value is not None:
            seen[key] = value


# ---------------------------------------------------------------------------------------------- index
@dataclass(eq=False)  # compared and hashed by identity: snapshots share them, caches key by them
class RunIndex:
    """One run's readable records (a step logged twice: the latest write wins) and what was skipped."""

    key: frozenset  # what the data provider's listing said about this run's tags when we read it
    entries: dict  # (tag, example, step) -> IndexEntry
    examples: dict  # (tag, example) -> [IndexEntry] sorted by step
    unreadable: list  # [Unreadable]


def latest_entries(entries: Iterable[IndexEntry]) -> dict:
    """(tag, example, step) -> the entry written last (a step logged twice, e.g. by restarted training)."""
    out: dict = {}
    for e in entries:
        k = (e.tag, e.example, e.step)
        if k not in out or out[k].wall_time <= e.wall_time:
            out[k] = e
    return out


def by_example(entries: dict) -> dict:
    """(tag, example) -> its entries sorted by step, from :func:`latest_entries`."""
    out: dict = {}
    for (tag, example, _), e in entries.items():
        out.setdefault((tag, example), []).append(e)
    for es in out.values():
        es.sort(key=lambda e: e.step)
    return out


class IndexCache:
    """``list_index`` results per run, re-read only when the data provider's listing of that run changes
    (max step, max wall time or metadata of any tag), and not asked again within ``ttl`` seconds.

    Snapshots are kept per experiment id for at most ``MAX_EXPERIMENTS`` ids (least recently used first
    out): any client can name an id, so memory must not grow with them. Runs are keyed by what the data
    provider says of them, not by the id: snapshots whose provider listing of a run is the same share one
    ``RunIndex`` (TensorBoard's local providers ignore experiment ids, so there is one copy in all).
    """

    def __init__(self, data_provider: Any, ttl: float = INDEX_TTL_S, max_experiments: int = MAX_EXPERIMENTS):
        self._provider = data_provider
        self._ttl = ttl
        self._snapshots = LRU(max_experiments)  # experiment id -> (monotonic time, {run: RunIndex})
        self._shared: "weakref.WeakValueDictionary[tuple, RunIndex]" = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, ctx: Any, experiment_id: str = "", *, fresh: bool = False) -> dict:
        """run -> :class:`RunIndex`. ``fresh`` asks the data provider even within the TTL."""
        snap = self._snapshots.get(experiment_id)
        if snap is not None and not fresh and time.monotonic() - snap[0] < self._ttl:
            return snap[1]  # no lock: snapshots are replaced, never mutated
        with self._lock:
            snap = self._snapshots.get(experiment_id)
            if snap is not None and not fresh and time.monotonic() - snap[0] < self._ttl:
                return snap[1]  # refreshed by another request while this one waited
            listing = self._provider.list_tensors(ctx, experiment_id=experiment_id, plugin_name=PLUGIN_NAME)
            old = snap[1] if snap is not None else {}
            runs = {}
            for run, tags in listing.items():
                key = frozenset((t, ts.max_step, ts.max_wall_time, ts.plugin_content) for t, ts in tags.items())
                prev = old.get(run)
                if prev is None or prev.key != key:
                    prev = self._shared.get((run, key))  # read already for another experiment id
                if prev is not None and prev.key == key:
                    runs[run] = prev
                    continue
                unreadable: list = []
                entries = latest_entries(e for e in list_index(self._provider, ctx, experiment_id, run=run,
                                                               unreadable=unreadable) if e.run == run)
                runs[run] = self._shared[(run, key)] = RunIndex(key, entries, by_example(entries), unreadable)
            self._snapshots.put(experiment_id, (time.monotonic(), runs))
            return runs


# -------------------------------------------------------------------------------------- run directories
class RunDirs:
    """Where a run's files are, as TensorBoard resolved them.

    Under the Python loader the multiplexer knows each run's directory (also under ``--logdir_spec``, where
    run names are not paths); under the Rust data server (``--logdir`` only) a run is its path relative to
    the logdir, ``"."`` being the logdir itself.
    """

    def __init__(self, logdir: str, multiplexer: Any = None):
        self.logdir = logdir
        self._multiplexer = multiplexer

    def __call__(self, run: str) -> str:
        if self._multiplexer is not None:
            path = self._multiplexer.RunPaths().get(run)
            if path:
                return str(path)
        if not self.logdir:
            raise fmt.FormatError(f"the directory of run {run!r} is unknown (no --logdir)")
        return self.logdir if run in (".", "") else storage.join_path(self.logdir, run)


def asset_path(run_dir: str, entry_index: dict) -> str:
    """Path of the asset file an index record points to (the file name is checked, not trusted)."""
    name = entry_index["asset"]["file"]
    if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
        raise fmt.FormatError(f"invalid asset file name {name!r}")
    return storage.join_path(storage.asset_dir(run_dir), name)


class LRU:
    """A thread-safe LRU bounded by the total ``cost`` of its values (bytes, or 1 per item)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: "OrderedDict[Any, tuple[Any, int]]" = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The cached value, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Any, value: Any, cost: int = 1) -> None:
        """Cache ``value`` unless it alone exceeds the capacity; evicts the least recently used."""
        if cost > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (value, cost)
            self._size += cost
            while self._size > self.capacity:
                _, (_, c) = self._items.popitem(last=False)
                self._size -= c


class _Flight:
    """One load in progress that other threads asking for the same key wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: Optional[BaseException] = None


class RecordStore:
    """Decodes layers, q/k and overviews from asset files, with a bounded LRU of parsed record headers
    and decoded layers (memory bounded by ``cache_bytes``, never by how much was logged).

    Every record is checked against its index entry before anything of it is served (``record``), and
    concurrent first reads of the same layer are decoded once (the others wait for it).
    """

    def __init__(self, run_dir: Callable[[str], str], cache_bytes: int = 256 << 20,
                 read_range: Callable[[str, int, int], bytes] = storage.read_range):
        self.run_dir = run_dir if callable(run_dir) else RunDirs(str(run_dir))
        self.read_range = read_range
        self.cache_bytes = cache_bytes
        self._cache = LRU(cache_bytes)
        self._flights: dict = {}
        self._flights_lock = threading.Lock()

    def _cached(self, key: Any, load: Callable[[], Any], nbytes: Callable[[Any], int], store: bool = True) -> Any:
        value = self._cache.get(key)
        if value is not None:
            return value
        with self._flights_lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = value = load()
            if store:
                self._cache.put(key, value, nbytes(value))
            return value
        except BaseException as e:
            flight.error = e
            raise
        finally:
            with self._flights_lock:
                del self._flights[key]
            flight.done.set()

    def asset_path(self, entry: IndexEntry) -> str:
        return asset_path(self.run_dir(entry.run), entry.index)

    def record(self, entry: IndexEntry) -> fmt.AssetRecord:
        """The parsed asset record of ``entry``, checked to be the record the entry describes
        (``format.record_mismatch``); ``FormatError`` otherwise."""
        path = self.asset_path(entry)
        offset = int(entry.index["asset"]["offset"])

        def load() -> fmt.AssetRecord:
            rec = fmt.parse_record_header(path, offset, self.read_range)
            problem = fmt.record_mismatch(entry.index, rec.header)
            if problem:
                raise fmt.FormatError(f"{path}@{offset}: {problem} (not the record of step {entry.step})")
            return rec

        return self._cached(("rec", path, offset, entry.step, entry.tag, entry.example), load,
                            lambda r: 8 * (r.data_offset - r.offset))  # parsed JSON ~ 8x its bytes

    def attention_codes(self, entry: IndexEntry, kind: str, layer: int, head: Optional[int] = None, *,
                        cache: bool = True) -> np.ndarray:
        """uint8 log8 codes, ``(heads, q, k)`` (or ``(1, q, k)`` for one head). ``cache=False`` uses a cached
        layer but does not add one (for callers that cache what they compute from it)."""
        rec = self.record(entry)
        k = rec.header["kinds"][kind]
        shape = (k["q_len"], k["k_len"])

        def load() -> np.ndarray:
            chunks = self.attention_chunks(entry, kind, layer, head)
            out = np.empty((len(chunks), *shape), np.uint8)
            for i, data in enumerate(chunks):
                out[i] = fmt.decode_codes(data, shape)
            return out

        return self._cached(("att", rec.path, rec.offset, kind, layer, head), load, lambda a: a.nbytes, cache)

    def attention_chunks(self, entry: IndexEntry, kind: str, layer: int, head: Optional[int] = None) -> list[bytes]:
        """The stored zlib chunks of one layer (every head, or one), checksummed, as written (not decoded)."""
        rec = self.record(entry)
        heads = range(rec.header["kinds"][kind]["heads"]) if head is None else [head]
        return fmt.read_chunks(rec, [rec.chunk(kind, "attention", layer, h) for h in heads], self.read_range)

    def image(self, entry: IndexEntry) -> bytes:
        """The record's image bytes (format v4), checksummed and checked against its header's ``"image"``;
        ``KeyError`` when the record has none, ``FormatError`` when it cannot be drawn or is not the image
        its header describes."""
        rec = self.record(entry)
        if "image" not in rec.header:
            raise KeyError("this record has no image")
        problem = fmt.image_problem(rec.header)
        chunk = rec.image_chunk()
        if problem is None and (chunk is None or chunk[1] != rec.header["image"]["bytes"]):
            problem = "image chunk is missing or not the size its header gives"
        if problem:
            raise fmt.FormatError(f"{rec.path}@{rec.offset}: {problem}")
        return fmt.read_chunk(rec, chunk, self.read_range)

    def overview_chunk(self, entry: IndexEntry, kind: str) -> bytes:
        """The stored zlib chunk of the overview, checksummed."""
        rec = self.record(entry)
        return fmt.read_chunk(rec, rec.chunk(kind, "overview"), self.read_range)

    def qk(self, entry: IndexEntry, kind: str, layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        """float16 queries ``(q, d)`` and keys ``(k, d)`` of one head; KeyError if not logged."""
        rec = self.record(entry)
        k = rec.header["kinds"][kind]
        if not k.get("has_qk"):
            raise KeyError("queries/keys were not logged for this step")
        d = k["head_dim"]
        q = fmt.decode_f16(fmt.read_chunk(rec, rec.chunk(kind, "queries", layer, head), self.read_range), (k["q_len"], d))
        kk = fmt.decode_f16(fmt.read_chunk(rec, rec.chunk(kind, "keys", layer, head), self.read_range), (k["k_len"], d))
        return q, kk

    def overview_codes(self, entry: IndexEntry, kind: str) -> np.ndarray:
        """uint8 log8 codes of the pooled overview, ``(layers, heads, pq, pk)``."""
        rec = self.record(entry)
        k = rec.header["kinds"][kind]
        shape = (k["layers"], k["heads"], *k["overview_shape"])
        return self._cached(("ov", rec.path, rec.offset, kind),
                            lambda: fmt.decode_codes(self.overview_chunk(entry, kind), shape), lambda a: a.nbytes)

    def value_norms(self, entry: IndexEntry, kind: str, layer: int) -> np.ndarray:
        """``||v_j W_O^h||`` of every head and key of one layer, ``(heads, k_len)`` float32 (format v5, cached);
        KeyError if the record has none."""
        rec = self.record(entry)
        k = rec.header["kinds"][kind]
        if not k.get("has_value_norms"):
            raise KeyError("value norms were not logged for this step (capture with values=True)")

        def load() -> np.ndarray:
            data = fmt.read_chunk(rec, rec.chunk(kind, fmt.VALUE_NORMS, layer), self.read_range)
            if len(data) != 4 * k["heads"] * k["k_len"]:
                raise fmt.FormatError(f"{rec.path}@{rec.offset}: value norms of {kind} layer {layer} hold "
                                      f"{len(data)} bytes, expected {4 * k['heads'] * k['k_len']}")
            return np.frombuffer(data, "<f4").reshape(k["heads"], k["k_len"])

        return self._cached(("vn", rec.path, rec.offset, kind, layer), load, lambda a: a.nbytes)

    # ---- long layers (format v3)
    def _long_kind(self, entry: IndexEntry, kind: str) -> tuple:
        rec = self.record(entry)
        k = rec.header["kinds"][kind]
        if k.get("layout") != fmt.LAYOUT_LONG:
            raise KeyError(f"{kind} attention of this record is stored densely")
        return rec, k

    def long_qk(self, entry: IndexEntry, kind: str, layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 queries ``(q_len, d)`` of one head and the keys ``(k_len, d)`` it reads (its key/value
        head's) of a long layer, decoded from float16 or bfloat16 (cached); KeyError if not stored."""
        rec, k = self._long_kind(entry, kind)
        if not k.get("has_qk"):
            raise KeyError("queries/keys were not stored for this layer")
        kv = head // (k["heads"] // k["kv_heads"])
        dtype, d = fmt.QK_DTYPES[k["qk_dtype"]], k["head_dim"]

        def load(what: str, index: int, length: int) -> Callable[[], np.ndarray]:
            return lambda: fmt.decode_qk(fmt.read_chunk(rec, rec.chunk(kind, what, layer, index), self.read_range),
                                         dtype, (length, d))

        q = self._cached(("lq", rec.path, rec.offset, kind, layer, head), load("queries", head, k["q_len"]),
                         lambda a: a.nbytes)
        kk = self._cached(("lk", rec.path, rec.offset, kind, layer, kv), load("keys", kv, k["k_len"]),
                          lambda a: a.nbytes)
        return q, kk

    def lse(self, entry: IndexEntry, kind: str, layer: int, head: int) -> np.ndarray:
        """Each row's log-sum-exp ``(q_len,)`` float32 of one head of a long layer."""
        rec, k = self._long_kind(entry, kind)
        return self._cached(("lse", rec.path, rec.offset, kind, layer, head), lambda: np.frombuffer(
            fmt.read_chunk(rec, rec.chunk(kind, "lse", layer, head), self.read_range), "<f4").reshape(k["q_len"]),
            lambda a: a.nbytes)

    def window(self, entry: IndexEntry, kind: str, layer: int, head: int, rows: tuple, cols: tuple,
               weighting: str = "weights") -> np.ndarray:
        """Attention of one head over ``rows = (i, j)`` x ``cols = (a, b)`` (half-open), float32: rebuilt exactly
        from q/k and lse for a long layer (``layouts.exact_window``), decoded from the stored code for a dense one;
        ``weighting="value"``: value-weighted (``metrics.value_weighted``; KeyError without value norms)."""
        k = self.record(entry).header["kinds"][kind]
        return layouts.of_kind(k).window(self, entry, kind, k, layer, head, rows, cols, weighting)

    def pyramid_chunk(self, entry: IndexEntry, kind: str, layer: int, head: int, agg: str = "mean") -> bytes:
        """The stored zlib chunk of one head's finest pyramid level (log8 codes ``pyramid_shape``): the mean
        per cell, or with ``agg="max"`` the largest weight per cell (format v5; KeyError when not stored)."""
        rec, k = self._long_kind(entry, kind)
        if agg == "max" and not k.get("pyramid_max"):
            raise KeyError("this long layer stores only the mean pyramid (logged before format v5)")
        return fmt.read_chunk(rec, rec.chunk(kind, fmt.PYRAMID_MAX if agg == "max" else "pyramid", layer, head),
                              self.read_range)

    def pyramid(self, entry: IndexEntry, kind: str, layer: int, head: int, level: int = 0,
                agg: str = "mean") -> np.ndarray:
        """Pooled attention of one head of a long layer, float32: level 0 is the stored one
        (``pyramid_shape``), level ``l`` has ``2**l`` times fewer bins per side (at least one). ``agg="max"``:
        each cell the largest weight of its block instead of the mean."""
        rec, k = self._long_kind(entry, kind)
        fq, fk = k["pyramid_shape"]
        fine = self._cached(("pyr", agg, rec.path, rec.offset, kind, layer, head), lambda: fmt.decode_attention(
            fmt.decode_codes(self.pyramid_chunk(entry, kind, layer, head, agg), (fq, fk))), lambda a: a.nbytes)
        if level == 0:
            return fine
        bq, bk = (_level_bins(f, n, level) for f, n in ((fq, k["q_len"]), (fk, k["k_len"])))
        pool = fmt.pool_pyramid_max if agg == "max" else fmt.pool_pyramid
        return pool(fine, k["q_len"], k["k_len"], bq, bk)

    def topk(self, entry: IndexEntry, kind: str, layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's largest weights of one head of a long layer: key indices ``(q_len, K)`` uint32 and
        log8 codes ``(q_len, K)`` uint8, descending."""
        rec, k = self._long_kind(entry, kind)
        shape = (k["q_len"], k["topk"])
        index = np.frombuffer(_inflate(fmt.read_chunk(rec, rec.chunk(kind, "topk_index", layer, head), self.read_range),
                                       4 * shape[0] * shape[1]), "<u4").reshape(shape)
        codes = fmt.decode_codes(fmt.read_chunk(rec, rec.chunk(kind, "topk_value", layer, head), self.read_range), shape)
        if index.size and int(index.max()) >= k["k_len"]:
            raise fmt.FormatError("a top-k key index is past the end of the keys")
        return index, codes


def _inflate(data: bytes, size: int) -> bytes:
    """A zlib chunk of exactly ``size`` bytes (bounded, like ``format.decode_codes``)."""
    return fmt.decode_codes(data, (size,)).tobytes()


def _level_bins(finest: int, length: int, level: int) -> int:
    """Bins of pyramid ``level`` along a side whose stored level has ``finest`` bins over ``length`` tokens:
    halved ``level`` times (512, 256, ...; bins nest), or any count when a stored bin is one token."""
    if finest == length:
        return max(1, -(-finest // 2**level))
    b = finest
    for _ in range(level):
        if b % 2:
            break
        b //= 2
    return b


@dataclass
class AttentionExample:
    """One logged example at one step, decoded."""

    run: str
    tag: str
    example: str
    step: int
    wall_time: float
    header: dict
    attention: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> (layers, heads, q, k) float32
    queries: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> (layers, heads, q, d) float32
    keys: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> (layers, heads or kv heads, k, d) float32
    pyramid: dict[str, np.ndarray] = field(default_factory=dict)  # long kinds: (layers, heads, bq, bk) float32
    pyramid_max: dict[str, np.ndarray] = field(default_factory=dict)  # long kinds (v5): largest weight per cell
    value_norms: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> (layers, heads, k) (format v5)
    weighting: str = "weights"  # "value": ``attention`` is value-weighted (``metrics.value_weighted``)
    image: Optional[bytes] = None  # the logged image's PNG / WebP bytes (format v4), as header["image"] says

    def tokens(self, kind: str = "encoder") -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) of ``kind``."""
        k = self.header["kinds"][kind]
        return self.header["sequences"][k["query"]], self.header["sequences"][k["key"]]


WEIGHTINGS = ("weights", "value")  # what the attention arrays hold: the weights, or value-weighted attention


def decode(store: RecordStore, entry: IndexEntry, with_qk: bool = True, rows: Optional[tuple] = None,
           cols: Optional[tuple] = None, weighting: str = "weights") -> AttentionExample:
    """One record decoded as :func:`read_attention` returns it (each kind by its layout's handler)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    ex = AttentionExample(entry.run, entry.tag, entry.example, entry.step, entry.wall_time, entry.index,
                          weighting=weighting)
    for kind, k in entry.index["kinds"].items():
        if k.get("has_value_norms"):
            ex.value_norms[kind] = np.stack([store.value_norms(entry, kind, l) for l in range(k["layers"])])
        elif weighting == "value":
            raise KeyError(f"{kind} attention of {entry.run}/{entry.tag}/{entry.example} step {entry.step} has no "
                           "value norms (capture with values=True)")
        layouts.of_kind(k).decode(store, entry, kind, k, with_qk, rows, cols, ex, weighting)
    if "image" in entry.index:
        try:
            ex.image = store.image(entry)
        except DATA_ERRORS as e:  # a corrupt image costs only the image, as in the tab
            warn_once((entry.asset_key, "image"), "attention: the image of %s/%s/%s step %s cannot be read: %s",
                      entry.run, entry.tag, entry.example, entry.step, e)
    return ex


def open_logdir(logdir: Optional[str] = None, logdir_spec: Optional[str] = None,
                cache_bytes: int = 0) -> tuple[dict, "RecordStore"]:
    """``(run -> RunIndex, RecordStore)`` of a logdir (or a ``--logdir_spec``) read as TensorBoard's Python
    loader reads it, through the plugin's own index and record checks: what ``read_attention`` and the
    notebook views read from."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_ingester, data_provider, plugin_event_multiplexer

    if (logdir is None) == (logdir_spec is None):
        raise ValueError("pass either logdir or logdir_spec")
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={PLUGIN_NAME: 0})
    if logdir is not None:
        logdir = str(logdir)
        if "://" not in logdir and not os.path.isdir(logdir):
            raise ValueError(f"logdir {logdir!r} is not a directory")
        multiplexer.AddRunsFromDirectory(logdir)
    else:  # as TensorBoard reads --logdir_spec (its own parser)
        for path, name in data_ingester._parse_event_files_spec(logdir_spec).items():
            multiplexer.AddRunsFromDirectory(path, name)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir or "")
    store = RecordStore(RunDirs(logdir or "", multiplexer), cache_bytes=cache_bytes)
    return IndexCache(provider).get(context.RequestContext()), store  # the latest write of a step wins


def read_attention(
    logdir: Optional[str] = None,
    *,
    logdir_spec: Optional[str] = None,
    run: Optional[str] = None,
    tag: Optional[str] = None,
    example: Optional[str] = None,
    step: Optional[int] = None,
    queries_keys: bool = True,
    rows: Optional[tuple] = None,
    cols: Optional[tuple] = None,
    strict: bool = False,
    weighting: str = "weights",
) -> list[AttentionExample]:
    """Read logged attention back as numpy arrays (the same reading path as the TensorBoard plugin).

    Filters are optional: ``read_attention("runs/demo", tag="probes", step=100)``. Runs are named as in
    TensorBoard: a sub-directory of ``logdir`` (``"."`` for the logdir itself), or, with
    ``logdir_spec="a:/path/one,b:/path/two"`` (TensorBoard's ``--logdir_spec``), ``a/<sub-directory>``.
    A step logged twice reads as its latest write, as in the tab. Values are decoded from the stored 8-bit
    code (within the bounds in docs/format.md); q/k are float16 widened to float32; ``queries_keys=False``
    skips reading them.

    Long layers (``kinds[kind]["layout"] == "long"``, format v3) are not stored densely: their pooled
    ``pyramid`` is always read, and ``attention`` holds exactly the window ``rows=(i, j)`` x ``cols=(a, b)``
    (half-open, token indices) when one is given, rebuilt from the stored q/k and each row's log-sum-exp
    (the backend's ``/window`` serves the same values). A window applies to dense kinds too (a slice). Their
    keys are one per key/value head.

    Records that cannot be read are skipped with a warning (logged once), as the plugin hides them: index
    records that are not JSON, fail their checksum, are of a newer format version or lack fields
    (``format.validate_index``), and records whose asset file is missing, truncated, corrupt or not the
    record its index entry describes. ``strict=True`` raises the error instead for the latter
    (``format.FormatError``, ``OSError``, ...).

    ``weighting="value"`` returns value-weighted attention (Kobayashi et al. 2020; ``metrics.value_weighted``:
    each row normalised over all its keys, also in a window) for records logged with value norms
    (``capture_attention(values=True)``, format v5); a record without them is skipped with a warning
    (raised with ``strict=True``). ``value_norms`` holds the stored norms whenever a record has them.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return list(iter_attention(logdir, logdir_spec=logdir_spec, run=run, tag=tag, example=example, step=step,
                               queries_keys=queries_keys, rows=rows, cols=cols, strict=strict, weighting=weighting))


def iter_attention(logdir: Optional[str] = None, *, logdir_spec: Optional[str] = None, run: Optional[str] = None,
                   tag: Optional[str] = None, example: Optional[str] = None, step: Optional[int] = None,
                   queries_keys: bool = True, rows: Optional[tuple] = None, cols: Optional[tuple] = None,
                   strict: bool = False, weighting: str = "weights") -> Iterator[AttentionExample]:
    """Like :func:`read_attention`, one example at a time."""
    runs, store = open_logdir(logdir, logdir_spec)
    for r in sorted(runs):
        if run is not None and r != run:
            continue
        for (t, x, s), e in sorted(runs[r].entries.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            if (tag is not None and t != tag) or (example is not None and x != str(example)) \
                    or (step is not None and s != step):
                continue
            try:
                ex = decode(store, e, queries_keys, rows, cols, weighting)
            except DATA_ERRORS as err:
                if strict:
                    raise
                warn_once((e.run, e.tag, e.example, e.step, type(err).__name__),
                          "attention: skipping %s/%s/%s step %s: %s: %s", e.run, e.tag, e.example, e.step,
                          type(err).__name__, err)
                continue
            yield ex
