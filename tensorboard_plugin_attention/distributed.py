"""One record from a model split across processes (torch.distributed).

Each rank captures what its forward computed. Under data parallelism (DDP, FSDP: parameters are gathered for
the forward) every rank computed every head of every layer. Under tensor parallelism a rank computed a slice
of each layer's heads, under pipeline parallelism a slice of the layers. ``complete_forward`` turns those
pieces into the one ``CapturedForward`` a single process would have recorded, on one rank (``dst``):

1. every rank sends a small manifest (which kind / layer / heads it holds, or the error its probes raised)
   to every other rank (``all_gather_object``);
2. every rank derives the same plan from the manifests: each (kind, layer, head slice) is taken from the
   lowest rank that holds it, ``dst`` first; a gap or an overlap is an error on every rank;
3. the ranks that hold a piece ``dst`` lacks send it (``gather_object``); ``dst`` concatenates heads and
   orders layers by the model's layer ids. Under data parallelism ``dst`` holds everything: nothing moves.

Long layers move as their summaries (q/k, log-sum-exp, pyramid, top-k: ``format.LongLayer``, one chunk per
head), never as n x n. The exchange runs on a gloo group of its own with a timeout, so a rank that failed,
hung or died makes every other rank raise ``DistributedCaptureError`` within ``timeout`` seconds, never wait
forever; the model's own collectives (FSDP, tensor parallel) keep the timeout of the user's process group.

Context / sequence parallelism (each rank holds a slice of the sequence) is refused by the capture itself
(``capture.UnsupportedParallelismError``). See docs/distributed.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from . import format as fmt
from .capture import CapturedForward, LayerRecord

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedCaptureError",
    "ExchangeStats",
    "complete_forward",
    "is_distributed",
    "last_exchange",
]

DEFAULT_TIMEOUT_S = float(os.environ.get("TB_ATTENTION_COLLECTIVE_TIMEOUT", 300))


class DistributedCaptureError(RuntimeError):
    """Raised on every rank when the ranks cannot make one record (a rank failed, died, or holds a piece
    that does not fit)."""


@dataclass
class ExchangeStats:
    """What the last ``complete_forward`` moved between ranks (for benchmarks and docs)."""

    manifest_bytes: int = 0  # tensor-free manifests, summed over ranks
    piece_bytes: int = 0  # array bytes sent to dst, summed over ranks
    replicated: bool = True  # dst held everything (data parallel): no piece moved


_STATS = ExchangeStats()
_GROUPS: dict[tuple, Any] = {}


def last_exchange() -> ExchangeStats:
    """Statistics of this process's last ``complete_forward``."""
    return dataclasses.replace(_STATS)


def is_distributed() -> bool:
    """Whether torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _exchange_group(timeout: float) -> Any:
    """A gloo group over the whole world with its own timeout, created once (a collective: every rank calls
    this at the same point, which ``complete_forward`` guarantees)."""
    key = (id(dist.group.WORLD), float(timeout))
    group = _GROUPS.get(key)
    if group is None:
        group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=float(timeout)))
        _GROUPS[key] = group
    return group


def _pieces(fwd: Optional[CapturedForward]) -> list[tuple[tuple, LayerRecord]]:
    """(kind, layer, head_offset) of each layer call: the model's layer ids where every call of a kind has a
    distinct one, else the call order (then pipeline stages cannot be told apart, and say so)."""
    out = []
    for kind, records in ({} if fwd is None else fwd.layers).items():
        ids = [rec.layer_id for rec in records]
        own_ids = None not in ids and len(set(zip(ids, (r.head_offset for r in records)))) == len(records)
        for rec in records:
            out.append(((kind, rec.layer_id if own_ids else rec.layer, rec.head_offset), rec))
    return out


def _manifest(fwd: Optional[CapturedForward]) -> dict:
    pieces = []
    for key, rec in _pieces(fwd):
        heads = int(rec.shape[1]) if rec.shape else 0
        pieces.append((*key, heads, rec.total_heads if rec.total_heads is not None else heads,
                       tuple(int(x) for x in rec.shape)))
    return {"pieces": pieces, "batch": None if fwd is None else fwd.batch_size}


def _plan(manifests: list[dict], dst: int) -> dict[tuple, int]:
    """(kind, layer, head_offset) -> the rank that provides it; raises the same error on every rank when the
    pieces do not make whole layers."""
    holders: dict[tuple, list[int]] = {}
    facts: dict[tuple, tuple] = {}
    for rank, m in enumerate(manifests):
        for kind, layer, offset, heads, total, shape in m["pieces"]:
            key = (kind, layer, offset)
            holders.setdefault(key, []).append(rank)
            if key in facts and facts[key][:2] != (heads, total):
                raise DistributedCaptureError(
                    f"{kind} layer {layer}: ranks disagree on its heads at offset {offset} "
                    f"({facts[key][0]} of {facts[key][1]} vs {heads} of {total})")
            facts[key] = (heads, total, shape)
    batches = {m.get("batch") for m in manifests if m["pieces"]}
    if len(batches) > 1:
        raise DistributedCaptureError(f"the ranks ran probe batches of different sizes {sorted(batches)}")
    layers: dict[tuple, list[tuple]] = {}
    for key in facts:
        layers.setdefault(key[:2], []).append(key)
    for (kind, layer), keys in layers.items():
        keys.sort(key=lambda k: k[2])
        total = facts[keys[0]][1]
        at = 0
        for key in keys:
            if key[2] != at:
                raise DistributedCaptureError(
                    f"{kind} layer {layer}: heads {at}..{key[2] - 1} of {total} were computed by no rank, or "
                    "the ranks' head slices overlap (a tensor-parallel layout the capture cannot assemble)")
            at += facts[key][0]
        if at != total:
            raise DistributedCaptureError(
                f"{kind} layer {layer}: the ranks computed {at} of its {total} heads; the record would be partial")
    for kind in {k for k, _ in layers}:
        ids = sorted(layer for k, layer in layers if k == kind)
        missing = sorted(set(range(ids[-1] + 1)) - set(ids))
        if missing:
            raise DistributedCaptureError(
                f"{kind} layers {missing} were computed by no rank (a pipeline stage that ran no probes?); "
                "the record would be partial")
    return {key: (dst if dst in ranks else min(ranks)) for key, ranks in holders.items()}


def _array_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_array_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_array_bytes(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_array_bytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


def _forward_facts(fwd: CapturedForward) -> dict:
    return {f: getattr(fwd, f) for f in ("attention_mask", "decoder_attention_mask", "input_ids",
                                         "decoder_input_ids", "model_name", "is_encoder_decoder", "config",
                                         "pixel_shape")}


def complete_forward(fwd: Optional[CapturedForward], error: Optional[BaseException] = None, *, dst: int = 0,
                     timeout: Optional[float] = None) -> Optional[CapturedForward]:
    """Make one complete forward on ``dst`` from every rank's captured piece (a collective: call it on every
    rank, at the same point, also on a rank whose forward raised: pass that as ``error``).

    Returns the whole forward on ``dst`` and ``None`` elsewhere; without torch.distributed (or with one
    process) returns ``fwd`` (raising ``error`` if given). Raises ``DistributedCaptureError`` on every rank
    when any rank passed an error, died or did not reach this call within ``timeout`` seconds
    (default ``DEFAULT_TIMEOUT_S``), or when the pieces do not make whole layers.
    """
    global _STATS
    if not is_distributed():
        if error is not None:
            raise error
        return fwd
    timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {"error": f"{type(error).__name__}: {error}"} if error is not None else _manifest(fwd)
    manifests: list[Any] = [None] * world
    try:
        group = _exchange_group(timeout)  # its creation is itself a rendezvous of every rank
        dist.all_gather_object(manifests, mine, group=group)
    except Exception as exc:  # a rank died, or did not come within the timeout
        raise DistributedCaptureError(
            f"rank {rank}: not every rank reached the attention capture's exchange within {timeout:g} s "
            f"(a rank died or hung): {exc}") from (error or exc)
    errors: dict[str, list[int]] = {}
    for r, m in enumerate(manifests):
        if "error" in m:
            errors.setdefault(m["error"], []).append(r)
    if errors:
        raise DistributedCaptureError("attention probes failed on " + "; ".join(
            f"rank{'s' if len(rs) > 1 else ''} {', '.join(map(str, rs))}: {msg}" for msg, rs in errors.items())) from error
    plan = _plan(manifests, dst)
    to_send = [(key, rec) for key, rec in _pieces(fwd) if plan.get(key) == rank]
    replicated = all(r == dst for r in plan.values())
    stats = ExchangeStats(manifest_bytes=sum(len(repr(m)) for m in manifests), replicated=replicated)
    if replicated:
        _STATS = stats
        return fwd if rank == dst else None
    payload = None if rank == dst else {"records": to_send, "forward": None if fwd is None else _forward_facts(fwd)}
    received: Optional[list] = [None] * world if rank == dst else None
    try:
        dist.gather_object(payload, received, dst=dst, group=group)
    except Exception as exc:
        raise DistributedCaptureError(
            f"rank {rank}: the attention pieces could not be gathered on rank {dst} within {timeout:g} s: {exc}"
        ) from exc
    stats.piece_bytes = _array_bytes([rec for _, rec in to_send])
    _STATS = stats
    if rank != dst:
        return None
    records = list(to_send)
    facts = [] if fwd is None else [_forward_facts(fwd)]
    for r, item in enumerate(received or []):
        if r != dst and item is not None:
            records += item["records"]
            if item["forward"] is not None:
                facts.append(item["forward"])
    stats.piece_bytes = sum(_array_bytes([rec for _, rec in item["records"]])
                            for r, item in enumerate(received or []) if r != dst and item is not None)
    return _assemble(records, facts)


def _assemble(records: list[tuple[tuple, LayerRecord]], facts: list[dict]) -> CapturedForward:
    """One forward from pieces: heads concatenated in the model's order, layers in the model's order."""
    out = CapturedForward()
    for name in ("attention_mask", "decoder_attention_mask", "input_ids", "decoder_input_ids", "config",
                 "pixel_shape"):
        setattr(out, name, next((f[name] for f in facts if f[name] is not None), None))
    out.model_name = next((f["model_name"] for f in facts if f["model_name"]), "")
    out.is_encoder_decoder = any(f["is_encoder_decoder"] for f in facts)
    by_layer: dict[tuple, list[LayerRecord]] = {}
    for key, rec in records:
        by_layer.setdefault(key[:2], []).append(rec)
    for kind, layer in sorted(by_layer):
        pieces = sorted(by_layer[(kind, layer)], key=lambda r: r.head_offset)
        merged = _concat_heads(pieces)
        merged.layer = len(out.layers.get(kind, []))
        out.layers.setdefault(kind, []).append(merged)
    return out


def _cat(tensors: list[Any], dim: int) -> Any:
    return None if any(t is None for t in tensors) else torch.cat(tensors, dim=dim)


def _concat_heads(pieces: list[LayerRecord]) -> LayerRecord:
    first = pieces[0]
    if len(pieces) == 1:
        return dataclasses.replace(first, head_offset=0, total_heads=None)
    long = None
    if first.long is not None:
        long = [_concat_long([p.long[i] for p in pieces]) for i in range(len(first.long))]
    shape = list(first.shape)
    shape[1] = sum(p.shape[1] for p in pieces)
    return dataclasses.replace(
        first, attention=_cat([p.attention for p in pieces], 1), queries=_cat([p.queries for p in pieces], 1),
        keys=_cat([p.keys for p in pieces], 1), value_norms=_cat([p.value_norms for p in pieces], 1), long=long,
        shape=tuple(shape), head_offset=0, total_heads=None)


def _concat_long(parts: list[fmt.LongLayer]) -> fmt.LongLayer:
    """One long layer from per-head-slice summaries (every field is per head, keys per key/value head)."""
    def cat(name: str) -> Any:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays, axis=0)

    first = parts[0]
    return fmt.LongLayer(
        queries=cat("queries"), keys=cat("keys"), qk_dtype=first.qk_dtype, lse=cat("lse"), k_len=first.k_len,
        pyramid=cat("pyramid"), topk_index=cat("topk_index"), topk_value=cat("topk_value"),
        metrics={k: np.concatenate([p.metrics[k] for p in parts]) for k in first.metrics}, info=first.info,
        value_norms=cat("value_norms"), pyramid_max=cat("pyramid_max"))
