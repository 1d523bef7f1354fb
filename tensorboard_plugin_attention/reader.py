"""Reading attention: the index from TensorBoard's data provider, arrays from the asset files by offset.

The plugin backend and ``read_attention`` (for notebooks and scripts) share everything here.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import numpy as np

from . import format as fmt
from .metadata import PLUGIN_NAME, parse_plugin_metadata

logger = logging.getLogger(__name__)

__all__ = ["read_attention", "AttentionExample", "IndexEntry", "LRU", "RecordStore", "list_index"]


@dataclass(frozen=True)
class IndexEntry:
    """One index record: an example of a tag at a step, and where its arrays are."""

    run: str
    tag: str
    example: str
    step: int
    wall_time: float
    index: dict  # the record header without its chunk table, plus "asset": {file, offset, length}


def _once(cache: set, key: Any, msg: str, *args: Any) -> None:
    if key not in cache:
        cache.add(key)
        logger.warning(msg, *args)


_warned: set = set()


def list_index(data_provider: Any, ctx: Any, experiment_id: str = "", run: Optional[str] = None) -> list[IndexEntry]:
    """Every readable index record (all steps), through the data-provider API only.

    Unreadable tags or records (unknown version, corrupt payload) are skipped and logged once.
    """
    runs = None if run is None else [run]
    from tensorboard.data import provider as dp

    listing = data_provider.list_tensors(ctx, experiment_id=experiment_id, plugin_name=PLUGIN_NAME,
                                         run_tag_filter=dp.RunTagFilter(runs=runs))
    wanted: dict[str, list[str]] = {}
    meta: dict[tuple[str, str], dict] = {}
    for r, tags in listing.items():
        for tb_tag, ts in tags.items():
            try:
                meta[(r, tb_tag)] = parse_plugin_metadata(ts.plugin_content)
            except ValueError as e:
                _once(_warned, (r, tb_tag, str(e)), "attention: skipping %s/%s: %s", r, tb_tag, e)
                continue
            wanted.setdefault(r, []).append(tb_tag)
    if not wanted:
        return []
    data = data_provider.read_tensors(
        ctx, experiment_id=experiment_id, plugin_name=PLUGIN_NAME,
        run_tag_filter=dp.RunTagFilter(runs=list(wanted), tags=sorted({t for ts in wanted.values() for t in ts})),
        downsample=2**31 - 1,
    )
    out = []
    for r, tags in data.items():
        for tb_tag, datums in tags.items():
            m = meta.get((r, tb_tag))
            if m is None:
                continue
            for d in datums:
                try:
                    payload = d.numpy.item() if hasattr(d.numpy, "item") else d.numpy
                    index = fmt.parse_index_payload(payload if isinstance(payload, bytes) else bytes(payload))
                except (ValueError, TypeError) as e:
                    _once(_warned, (r, tb_tag, d.step), "attention: skipping %s/%s step %s: %s", r, tb_tag, d.step, e)
                    continue
                out.append(IndexEntry(r, m["tag"], m["example"], int(d.step), float(d.wall_time), index))
    out.sort(key=lambda e: (e.run, e.tag, e.example, e.step))
    return out


def asset_path(logdir: str, run: str, entry_index: dict) -> str:
    """Absolute path of the asset file an index record points to (the file name is checked, not trusted)."""
    name = entry_index["asset"]["file"]
    if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
        raise fmt.FormatError(f"invalid asset file name {name!r}")
    run_dir = logdir if run in (".", "") else fmt.join_path(logdir, run)
    return fmt.join_path(fmt.asset_dir(run_dir), name)


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


class RecordStore:
    """Decodes layers, q/k and overviews from asset files, with a bounded LRU of parsed record headers
    and decoded layers (memory bounded by ``cache_bytes``, never by how much was logged)."""

    def __init__(self, logdir: str, cache_bytes: int = 256 << 20,
                 read_range: Callable[[str, int, int], bytes] = fmt.read_range):
        self.logdir = logdir
        self.read_range = read_range
        self.cache_bytes = cache_bytes
        self._cache = LRU(cache_bytes)

    def _cached(self, key: Any, load: Callable[[], Any], nbytes: Callable[[Any], int], store: bool = True) -> Any:
        value = self._cache.get(key)
        if value is None:
            value = load()
            if store:
                self._cache.put(key, value, nbytes(value))
        return value

    def record(self, entry: IndexEntry) -> fmt.AssetRecord:
        path = asset_path(self.logdir, entry.run, entry.index)
        offset = int(entry.index["asset"]["offset"])
        return self._cached(("rec", path, offset),
                            lambda: fmt.parse_record_header(path, offset, self.read_range),
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
                            lambda: fmt.decode_codes(fmt.read_chunk(rec, rec.chunk(kind, "overview"), self.read_range), shape),
                            lambda a: a.nbytes)


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
    keys: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> (layers, heads, k, d) float32

    def tokens(self, kind: str = "encoder") -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) of ``kind``."""
        k = self.header["kinds"][kind]
        return self.header["sequences"][k["query"]], self.header["sequences"][k["key"]]


def _decode(store: RecordStore, entry: IndexEntry, with_qk: bool) -> AttentionExample:
    ex = AttentionExample(entry.run, entry.tag, entry.example, entry.step, entry.wall_time, entry.index)
    for kind, k in entry.index["kinds"].items():
        ex.attention[kind] = np.stack([fmt.decode_attention(store.attention_codes(entry, kind, l))
                                       for l in range(k["layers"])])
        if with_qk and k.get("has_qk"):
            pairs = [[store.qk(entry, kind, l, h) for h in range(k["heads"])] for l in range(k["layers"])]
            ex.queries[kind] = np.array([[q for q, _ in layer] for layer in pairs], dtype=np.float32)
            ex.keys[kind] = np.array([[kk for _, kk in layer] for layer in pairs], dtype=np.float32)
    return ex


def read_attention(
    logdir: str,
    *,
    run: Optional[str] = None,
    tag: Optional[str] = None,
    example: Optional[str] = None,
    step: Optional[int] = None,
    queries_keys: bool = True,
    strict: bool = False,
) -> list[AttentionExample]:
    """Read logged attention back as numpy arrays (the same decoding the TensorBoard plugin uses).

    Filters are optional: ``read_attention("runs/demo", tag="probes", step=100)``. Runs are named as in
    TensorBoard (sub-directory of ``logdir``, ``"."`` for the logdir itself). Values are decoded from the
    stored 8-bit code (within the bounds in docs/format.md); q/k are float16 widened to float32;
    ``queries_keys=False`` skips reading them.

    Records that cannot be read are skipped with a warning (logged once), as the plugin hides them: index
    records that are not JSON, of a newer format version or lacking fields (``format.validate_index``),
    and records whose asset file is missing, truncated or corrupt. ``strict=True`` raises the error
    instead for the latter (``format.FormatError``, ``OSError``, ...).
    """
    return list(iter_attention(logdir, run=run, tag=tag, example=example, step=step, queries_keys=queries_keys,
                               strict=strict))


# What makes one record's arrays unreadable (as in the plugin): skip it, keep reading the others.
_DATA_ERRORS = (fmt.FormatError, OSError, ValueError, KeyError, IndexError, TypeError, zlib.error)


def iter_attention(logdir: str, *, run: Optional[str] = None, tag: Optional[str] = None,
                   example: Optional[str] = None, step: Optional[int] = None,
                   queries_keys: bool = True, strict: bool = False) -> Iterator[AttentionExample]:
    """Like :func:`read_attention`, one example at a time."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    logdir = str(logdir)
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    store = RecordStore(logdir, cache_bytes=0)
    for e in list_index(provider, context.RequestContext(), run=run):
        if (tag is None or e.tag == tag) and (example is None or e.example == str(example)) \
                and (step is None or e.step == step):
            try:
                ex = _decode(store, e, queries_keys)
            except _DATA_ERRORS as err:
                if strict:
                    raise
                _once(_warned, (e.run, e.tag, e.example, e.step, type(err).__name__),
                      "attention: skipping %s/%s/%s step %s: %s: %s", e.run, e.tag, e.example, e.step,
                      type(err).__name__, err)
                continue
            yield ex
