"""Long attention layers: what a record keeps when the dense matrix is too large (torch, chunked).

For softmax attention ``p_ij = exp(s_ij - lse_i)`` with ``s_ij = softcap(scaling * q_i . k_j)`` on the keys the
mask lets row ``i`` see (causal, sliding window), so queries, keys and each row's log-sum-exp give any window
of the matrix exactly, on demand (``reader.exact_window``). :func:`summarize` computes, for one layer of one
example and without ever holding more than ``chunk x n`` scores per head, on the tensors' own device:

* ``lse``: each row's log-sum-exp (natural log), float32;
* ``pyramid``: pooled attention at up to ``PYRAMID_BINS x PYRAMID_BINS`` cells (token ``i`` in bin
  ``floor(i * bins / n)``; queries of a bin averaged, keys of a bin summed, so rows still sum to 1; coarser
  levels nest and are pooled from it by readers);
* ``topk``: each row's ``TOPK`` largest weights and their key indices;
* the per-head metrics of docs/metrics.md, from per-row sums (``metrics.metrics_from_rows``);
* optionally the layer's output ``p @ v`` (so a capture needs no other attention computation).

Queries and keys are stored as the model used them: bfloat16 or float16 as they are; float32 as float16 when
that provably moves no weight by more than ``FIDELITY`` (1e-4), else as float32. Everything (lse, summaries,
the output) is computed from q/k as stored, so a rebuilt row sums to 1, and a layer whose float32 q/k were
rounded differs from eager attention by at most that much per weight. Grouped-query keys are stored once
per key/value head. Scores are computed in float32 from
the model's own precision, as eager attention does. torch is imported by this module only: viewing never
needs it.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch

from . import format as fmt
from . import metrics as metrics_mod

__all__ = ["summarize", "DEFAULT_DENSE_LIMIT", "PYRAMID_BINS", "TOPK"]

DEFAULT_DENSE_LIMIT = 1024  # tokens: above this (q_len * k_len > limit**2) a layer is stored long
PYRAMID_BINS = fmt.PYRAMID_BINS
TOPK = fmt.DEFAULT_TOPK
CHUNK_BYTES = 32 << 20  # scores of one chunk of rows, all heads (float32): measured fastest of 2-128 MB


def bins(length: int, count: int, device: Any = None) -> torch.Tensor:
    """Bin of each of ``length`` tokens among ``count`` bins: ``floor(i * count / length)``."""
    return torch.div(torch.arange(length, device=device) * count, length, rounding_mode="floor")


FIDELITY = 1e-4  # float32 q/k are rounded to float16 only if that provably moves no weight by more than this


def _store_dtype(q: torch.Tensor, k: torch.Tensor, scaling: float) -> tuple[torch.dtype, str]:
    """bfloat16 or float16 q/k are kept as they are. float32 q/k are stored as float16 only when rounding
    them provably moves no weight by more than ``FIDELITY``: float16 rounds each value by at most 2**-11 of it,
    so a score moves by at most ``scaling * 2**-10 * |q_i| |k_j|`` (softcap only shrinks that) and a weight by
    at most twice the largest score change. Real models' q/k are often large enough to need float32."""
    if q.dtype == torch.bfloat16 or k.dtype == torch.bfloat16:
        return torch.bfloat16, "bfloat16"
    if q.dtype == torch.float16 and k.dtype == torch.float16:
        return torch.float16, "float16"
    qn = float(q.detach().float().norm(dim=-1).amax()) if q.numel() else 0.0
    kn = float(k.detach().float().norm(dim=-1).amax()) if k.numel() else 0.0
    bound = 2 * abs(scaling) * 2**-10 * qn * kn
    fits = max(float(q.detach().abs().amax()), float(k.detach().abs().amax())) < 65504
    return (torch.float16, "float16") if fits and bound <= FIDELITY else (torch.float32, "float32")


def _to_numpy(x: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """float16 / float32 as numpy; bfloat16 as its raw bits (uint16), which numpy cannot hold as floats."""
    x = x.detach().to(dtype)
    if dtype == torch.bfloat16:
        return x.view(torch.int16).cpu().numpy().view(np.uint16)
    return x.cpu().numpy()


@torch.no_grad()
def summarize(
    q: torch.Tensor,
    k: torch.Tensor,
    v: Optional[torch.Tensor] = None,
    *,
    scaling: float,
    causal: bool,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
    token_ids: Optional[Sequence[Any]] = None,
    keep_qk: bool = True,
    info: Optional[dict] = None,
    topk: int = TOPK,
    pyramid_bins: int = PYRAMID_BINS,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[fmt.LongLayer, Optional[torch.Tensor]]:
    """Summaries of one layer of one example, and its output if ``v`` is given.

    Args:
      q: ``(heads, n, d)`` queries as the model uses them (after rotary embedding), padding removed.
      k: ``(kv_heads, m, d)`` keys (``heads`` a multiple of ``kv_heads``: query head ``h`` reads key head
        ``h // (heads // kv_heads)``).
      v: ``(kv_heads, m, dv)`` values, to also return the output ``(heads, n, dv)`` in ``v.dtype``.
      scaling, causal, sliding_window, softcap: the layer's score function and mask. Causal rows are aligned
        bottom-right (query ``i`` sees keys ``<= i + m - n``); a sliding window of ``w`` lets it see the ``w``
        keys up to there.
      token_ids: the ``n`` input ids of a self-attention (for the induction metric).
      keep_qk: store q/k (the record can then be rebuilt exactly); otherwise only the summaries.
    """
    heads, n, d = q.shape
    kv_heads, m, _ = k.shape
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads are not a multiple of {kv_heads} key/value heads")
    group = heads // kv_heads
    device = q.device
    store, store_name = _store_dtype(q, k, scaling) if keep_qk else (q.dtype, "float32")
    if keep_qk and store != q.dtype:  # everything is computed from q/k as stored, so a rebuild agrees with lse
        q, k = q.to(store), k.to(store)
    kt = k.float().transpose(1, 2)  # (kv_heads, d, m)
    vf = None if v is None else v
    bq, bk = min(n, pyramid_bins), min(m, pyramid_bins)
    kbin, qbin = bins(m, bk, device), bins(n, bq, device)
    topk = min(topk, m)
    offset = m - n
    cols = torch.arange(m, device=device)
    square = n == m
    codes = None
    if token_ids is not None and square:
        codes = torch.as_tensor(metrics_mod.token_codes(list(token_ids)), device=device)

    rows_per_chunk = max(1, min(n, chunk_bytes // (4 * 3 * heads * m)))
    pyramid = torch.zeros(heads, bq, bk, dtype=torch.float32, device=device)
    lse_out = np.empty((heads, n), np.float32)
    top_i = np.zeros((heads, n, topk), np.uint32)
    top_v = np.zeros((heads, n, topk), np.float32)
    sums = {name: np.zeros((heads, n)) for name in ("entropy", "sink", "distance", "prev_token", "induction")}
    repeated = np.zeros(n, dtype=bool)
    out = None if v is None else torch.empty(heads, n, v.shape[-1], dtype=v.dtype, device=device)
    width = m // bk if m % bk == 0 else 0  # keys per pyramid bin, when the bins are equal

    kf = k.float()
    qs = q.float() * scaling  # scaling folded into the queries: s = qs . k
    for r0 in range(0, n, rows_per_chunk):
        r1 = min(n, r0 + rows_per_chunk)
        r = r1 - r0
        # Only the keys some row of the chunk can see: up to the last row's diagonal (causal), from the first
        # row's window start (sliding window); widened to whole pyramid bins. Causal layers do half the work.
        c0 = max(0, r0 + offset - sliding_window + 1) if sliding_window else 0
        c1 = min(m, r1 + offset) if causal else m
        if width:
            c0, c1 = c0 // width * width, min(m, -(-c1 // width) * width)
        c1 = max(c1, min(m, c0 + 1))
        mc = c1 - c0
        cs = cols[c0:c1]
        qc = qs[:, r0:r1].reshape(kv_heads, group * r, d)  # heads of a key group are consecutive
        s = torch.bmm(qc, kt[:, :, c0:c1]).reshape(heads, r, mc)
        if softcap:
            s.div_(softcap).tanh_().mul_(softcap)
        rows = torch.arange(r0, r1, device=device) + offset  # key index of the diagonal, per row
        allowed = None
        if causal:
            allowed = cs[None, :] <= rows[:, None]
        if sliding_window:
            near = rows[:, None] - cs[None, :] < sliding_window
            allowed = near if allowed is None else allowed & near
        if allowed is not None:
            s.masked_fill_(~allowed, float("-inf"))
        # e = exp(s - max) in place; p = e / z is never formed: every summary is linear in a row of p, so it
        # is taken from e and divided by z afterwards (one pass over the scores less); lse = max + log z
        peak = s.amax(dim=-1, keepdim=True)
        e = s.sub_(peak).exp_()
        del s
        z = e.sum(dim=-1, keepdim=True)  # (heads, r, 1)
        lse = (peak + z.log()).squeeze(-1)  # (heads, r)
        zr = z.squeeze(-1)  # (heads, r)
        eg = e.reshape(kv_heads, group * r, mc)
        if out is not None:
            out[:, r0:r1] = (torch.bmm(eg.to(vf.dtype), vf[:, c0:c1]).reshape(heads, r, -1) / z).to(vf.dtype)
        if width:  # equal bins, and the chunk's keys are whole bins
            pooled = e.reshape(heads, r, mc // width, width).sum(-1)
            pyramid[:, :, c0 // width:c1 // width].index_add_(1, qbin[r0:r1], pooled.div_(z))
        else:
            pooled = torch.zeros(heads, r, bk, dtype=torch.float32, device=device).index_add_(2, kbin[c0:c1], e)
            pyramid.index_add_(1, qbin[r0:r1], pooled.div_(z))
        kk = min(topk, mc)
        tv, ti = torch.topk(e, kk, dim=-1)
        lse_out[:, r0:r1] = lse.cpu().numpy()
        top_v[:, r0:r1, :kk] = (tv / z).cpu().numpy()
        top_i[:, r0:r1, :kk] = (ti.to(torch.int64) + c0).cpu().numpy().astype(np.uint32)
        # per-row sums for the metrics (metrics.row_sums, on the device)
        if softcap:
            p = e / z
            entropy = -torch.special.xlogy(p, p).sum(-1)
            del p
        else:  # -sum p log p = lse - sum_j p_ij s_ij, and sum_j p_ij s_ij = qs_i . (e @ k)_i / z_i: a small product
            ps = (qc * torch.bmm(eg, kf[:, c0:c1])).sum(-1).reshape(heads, r) / zr
            entropy = lse - ps
        sums["entropy"][:, r0:r1] = entropy.double().cpu().numpy()
        if c0 == 0:
            sums["sink"][:, r0:r1] = (e[:, :, 0] / zr).double().cpu().numpy()
        i_tok = torch.arange(r0, r1, device=device)
        if square:
            if causal:  # every visible key is at or before the row: sum_j p_ij (i - j) = i - sum_j p_ij j
                expected_key = torch.bmm(eg, cs.float()[None, :, None].expand(kv_heads, mc, 1)).reshape(heads, r)
                distance = i_tok.float()[None, :] - expected_key / zr
            else:
                distance = torch.einsum("hrm,rm->hr", e, (i_tok[:, None] - cs[None, :]).abs().float()) / zr
            sums["distance"][:, r0:r1] = distance.double().cpu().numpy()
            has_prev = (i_tok >= 1) & (i_tok - 1 >= c0) & (i_tok - 1 < c1)
            prev = torch.zeros(heads, r, device=device)
            idx = torch.nonzero(has_prev).flatten()
            if idx.numel():
                prev[:, idx] = e[:, idx, i_tok[idx] - 1 - c0]
            sums["prev_token"][:, r0:r1] = (prev / zr).double().cpu().numpy()
            if codes is not None:
                i_codes = codes[r0:r1]
                # targets [i, j]: token j - 1 equals token i and j - 1 < i (j in c0..c1)
                prev_cols = cs - 1
                valid = prev_cols >= 0
                same = (i_codes[:, None] == codes[prev_cols.clamp(min=0)][None, :]) & valid[None, :] \
                    & (prev_cols[None, :] < i_tok[:, None])
                targets = same.float()
                sums["induction"][:, r0:r1] = (torch.einsum("hrm,rm->hr", e, targets) / zr).double().cpu().numpy()
        del e, eg

    if codes is not None:  # a row counts for induction when its token occurred before it (seen or not)
        host = codes.cpu().numpy()
        first = np.full(int(host.max()) + 1, n)
        np.minimum.at(first, host, np.arange(n))
        repeated = first[host] < np.arange(n)
    counts = torch.bincount(qbin, minlength=bq).float()
    pyramid = (pyramid / counts[None, :, None]).cpu().numpy()
    metrics = metrics_mod.metrics_from_rows(dict(sums, repeated=repeated, has_tokens=codes is not None), n, m,
                                            causal=bool(causal))
    layer = fmt.LongLayer(
        queries=_to_numpy(q, store) if keep_qk else None,
        keys=_to_numpy(k, store) if keep_qk else None,
        qk_dtype=store_name,
        lse=lse_out,
        k_len=m,
        pyramid=pyramid.astype(np.float32),
        topk_index=top_i,
        topk_value=top_v,
        metrics={name: metrics[name] for name in metrics_mod.METRIC_NAMES},
        info=dict(info or {}, scaling=float(scaling), causal=bool(causal), softcap=softcap,
                  sliding_window=sliding_window),
    )
    return layer, out


def summarize_numpy(q: np.ndarray, k: np.ndarray, **kwargs: Any) -> fmt.LongLayer:
    """:func:`summarize` for numpy (or torch CPU) inputs, for the writer API (no output)."""
    qt = q if isinstance(q, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(q))
    kt = k if isinstance(k, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(k))
    return summarize(qt, kt, **kwargs)[0]


def default_scaling(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
