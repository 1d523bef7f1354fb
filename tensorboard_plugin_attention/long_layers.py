"""Long attention layers: what a record keeps when the dense matrix is too large (torch, chunked).

For softmax attention ``p_ij = exp(s_ij - lse_i)`` with ``s_ij = softcap(scaling * q_i . k_j)`` on the keys the
mask lets row ``i`` see (causal, sliding window), so queries, keys and each row's log-sum-exp give any window
of the matrix exactly, on demand (``reader.exact_window``). :func:`summarize` computes, for one layer of one
example and without ever holding more than ``chunk x n`` scores per head, on the tensors' own device:

* ``lse``: each row's log-sum-exp (natural log), float32;
* ``pyramid``: pooled attention at up to ``PYRAMID_BINS x PYRAMID_BINS`` cells (token ``i`` in bin
  ``floor(i * bins / n)``; queries of a bin averaged, keys of a bin summed, so rows still sum to 1; coarser
  levels nest and are pooled from it by readers);
* ``pyramid_max``: the same cells holding the largest weight of each block (format v5), so one strong link
  (a retrieval head's needle) stays visible in a whole-head overview where the mean fades it;
* ``topk``: each row's ``TOPK`` largest weights and their key indices;
* the per-head metrics of docs/metrics.md, from per-row sums (``metrics.metrics_from_rows``);
* optionally the layer's output ``p @ v`` (so a capture needs no other attention computation).

Queries and keys are stored as the model used them: bfloat16 or float16 as they are; float32 as float16 when
that provably moves no weight by more than ``FIDELITY`` (1e-4), else as float32. Everything (lse, summaries,
the output) is computed from q/k as stored, so a rebuilt row sums to 1, and a layer whose float32 q/k were
rounded differs from eager attention by at most that much per weight. Grouped-query keys are stored once
per key/value head. Scores are computed in float32 from
the model's own precision, as eager attention does. torch is imported by this module only: viewing never
needs it. On a CPU each chunk's per-row tail (softmax, pyramid, top-k, entropy) runs in C where a compiler is
(:mod:`.row_kernel`; torch's operations otherwise, to the same record within float32 rounding).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import format as fmt
from . import metrics as metrics_mod
from . import row_kernel

__all__ = ["summarize", "DEFAULT_DENSE_LIMIT", "PYRAMID_BINS", "TOPK"]

DEFAULT_DENSE_LIMIT = 1024  # tokens: above this (q_len * k_len > limit**2) a layer is stored long
PYRAMID_BINS = fmt.PYRAMID_BINS
TOPK = fmt.DEFAULT_TOPK
CHUNK_BYTES = 32 << 20  # scores of one chunk of rows, all heads (float32): measured fastest of 2-128 MB (pure path)
FUSED_CHUNK_BYTES = 4 << 20  # fused path: weights of one chunk (float32), small enough to stay in cache
# with the C tail (which visits a chunk row by row) larger chunks measured faster: fewer products and fewer
# operations per chunk (one 8192-token layer 1.36 -> 1.16-1.20 s BERT-shaped, 2.6 -> 2.1 s LLaMA-shaped)
KERNEL_CHUNK_BYTES = 8 << 20
TOPK_BLOCK = row_kernel.BLOCK  # fused top-k: the k largest weights of a row lie in its k blocks with the largest maxima
MIN_PRODUCT_ROWS = 128  # fused: query rows (of all heads of a key head) per score product
INDUCTION_PAIRS = 64  # fused induction: gather (row, key) targets while there are at most this many per row


def visible_keys(r0: int, r1: int, offset: int, m: int, causal: bool, sliding_window: Optional[int],
                 width: int) -> tuple[int, int]:
    """The keys ``[c0, c1)`` some row of ``r0 .. r1 - 1`` can see: up to the last row's diagonal (causal), from
    the first row's window start (sliding window), widened to whole bins of ``width`` keys. Causal layers do
    half the work."""
    c0 = max(0, r0 + offset - sliding_window + 1) if sliding_window else 0
    c1 = min(m, r1 + offset) if causal else m
    if width:
        c0, c1 = c0 // width * width, min(m, -(-c1 // width) * width)
    return c0, max(c1, min(m, c0 + 1))


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


def _induction_pairs(codes: np.ndarray, budget: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Every induction target ``(i, j)`` (token ``j - 1`` equals token ``i``, ``j - 1 < i``), sorted by row, or
    None when there are more than ``budget`` (long runs of one token: the dense product is then cheaper)."""
    n = codes.size
    order = np.argsort(codes, kind="stable")  # equal tokens together, in position order
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    earlier = np.arange(n) - group_start  # earlier occurrences of each (sorted) position's token
    total = int(earlier.sum())
    if total > budget:
        return None
    rows = np.repeat(order, earlier)
    step = np.arange(total) - np.repeat(np.cumsum(earlier) - earlier, earlier)
    cols = order[np.repeat(group_start, earlier) + step] + 1
    by_row = np.argsort(rows, kind="stable")
    return rows[by_row], cols[by_row]


def _max_into(dst: torch.Tensor, dim: int, index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst[..., index[i], ...] = max(dst[..., index[i], ...], src[..., i, ...])`` along ``dim`` (in place)."""
    shape = [1] * src.dim()
    shape[dim] = -1
    return dst.scatter_reduce_(dim, index.view(shape).expand_as(src), src, "amax")


def _fused_rows(qs: torch.Tensor, kf: torch.Tensor, vf: Optional[torch.Tensor], out: Optional[torch.Tensor],
                pyramid: torch.Tensor, pyramid_max: torch.Tensor, lse_out: torch.Tensor, top_i: torch.Tensor, top_v: torch.Tensor, sums: dict, *,
                causal: bool, sliding_window: Optional[int], softcap: Optional[float], codes: Optional[torch.Tensor],
                qbin: torch.Tensor, kbin: torch.Tensor, topk: int, chunk_bytes: int,
                kernel: Optional[ctypes.CDLL] = None) -> None:
    """The summaries of every row, in chunks of rows small enough (``chunk_bytes`` of weights) that the
    several reads of a chunk hit the cache instead of memory, which is what made the large chunks slow: one
    score product, then in cache: max, exp, sum, normalise; pooled keys then pooled rows (the pyramid), block
    maxima for the top-k (``TOPK_BLOCK``), the entropy (``sum p (s - max)``), gathers for the previous token,
    the sink and the induction targets. With the C tail (``kernel``) it also sums the distance, so the output is
    one product ``p @ v``; with torch's operations one product per row block with ``[v | 1 | j]`` gives the
    output and the distance's moments. Fills the arrays in place (same layout as the pure loop)."""
    heads, n, d = qs.shape
    kv_heads, m, _ = kf.shape
    group = heads // kv_heads
    device = qs.device
    offset = m - n
    square = n == m
    bq, bk = pyramid.shape[1:]
    width = m // bk if m % bk == 0 else 0
    rq = n // bq if n % bq == 0 else 0  # query rows per pyramid bin, when the bins are equal
    kt = kf.transpose(1, 2).contiguous()  # (kv_heads, d, m): a contiguous right operand makes the product faster
    rhs = None  # the C tail sums the distance itself: its output product is p @ v
    if kernel is None:  # per key: 1 and its index, for the visible mass and the expected key left / right of a row block
        ones_j = torch.stack([torch.ones(m, device=device), torch.arange(m, device=device, dtype=torch.float32)], 1)
        rhs = ones_j[None].expand(kv_heads, m, 2) if vf is None else torch.cat([vf, ones_j[None].expand(kv_heads, m, 2)], 2)
    dv = 0 if vf is None else vf.shape[-1]
    pairs = None
    if codes is not None:
        pairs = _induction_pairs(codes.cpu().numpy(), INDUCTION_PAIRS * n)
        if pairs is not None:
            pair_rows, pair_cols = (torch.as_tensor(a, device=device) for a in pairs)
            pair_bounds = np.searchsorted(pairs[0], np.arange(0, n + 1))

    def pool_by_index(p: torch.Tensor, r0: int, r1: int, c0: int, c1: int) -> None:
        """The pyramid's cells of a chunk whose rows are not whole query bins, or whose keys are unequal bins."""
        r, mc = r1 - r0, c1 - c0
        if width:
            cells = p.view(heads, r, mc // width, width)
            pyramid[:, :, c0 // width:c1 // width].index_add_(1, qbin[r0:r1], cells.sum(-1))
            _max_into(pyramid_max[:, :, c0 // width:c1 // width], 1, qbin[r0:r1], cells.amax(-1))
        else:
            pooled = torch.zeros(heads, r, bk, device=device).index_add_(2, kbin[c0:c1], p)
            pyramid.index_add_(1, qbin[r0:r1], pooled)
            peaks = _max_into(torch.zeros(heads, r, bk, device=device), 2, kbin[c0:c1], p)
            _max_into(pyramid_max, 1, qbin[r0:r1], peaks)

    # at least MIN_PRODUCT_ROWS rows of queries per score product: fewer make the product itself slow
    rows_per_chunk = max(1, min(n, max(-(-MIN_PRODUCT_ROWS // heads), chunk_bytes // (4 * heads * m))))
    if rq:  # whole query bins per chunk: rows are pooled into their bins before the keys are
        rows_per_chunk = -(-rows_per_chunk // rq) * rq
    scores = torch.empty(heads * rows_per_chunk * m, device=device)
    for r0 in range(0, n, rows_per_chunk):
        r1 = min(n, r0 + rows_per_chunk)
        r = r1 - r0
        c0, c1 = visible_keys(r0, r1, offset, m, causal, sliding_window, width)
        mc = c1 - c0
        # into one buffer for every chunk: a fresh 4 MB tensor per chunk cost the kernel's page zeroing each time
        s = torch.bmm(qs[:, r0:r1].reshape(kv_heads, group * r, d), kt[:, :, c0:c1],
                      out=scores[:kv_heads * group * r * mc].view(kv_heads, group * r, mc)).view(heads, r, mc)
        if softcap:
            s.div_(softcap).tanh_().mul_(softcap)
        diag = torch.arange(r0, r1, device=device) + offset  # key index of the diagonal, per row
        # masked keys get the lowest finite score (not -inf): their weight is still 0, and 0 * score stays 0
        # in the entropy's sum p (s - max). Only the columns some row cannot see are touched.
        lo = min(c1, max(c0, r1 - 1 + offset - sliding_window + 1)) if sliding_window else c0  # all see [lo, hi)
        hi = min(c1, r0 + offset + 1) if causal else c1
        if causal and hi < c1:
            cs = torch.arange(hi, c1, device=device)
            s[:, :, hi - c0:].masked_fill_(cs[None, :] > diag[:, None], torch.finfo(torch.float32).min)
        if sliding_window and lo > c0:
            cs = torch.arange(c0, lo, device=device)
            s[:, :, :lo - c0].masked_fill_(diag[:, None] - cs[None, :] >= sliding_window, torch.finfo(torch.float32).min)
        if square:  # keys left of the row block, on it (the diagonal block), right of it
            a, b = min(max(r0, c0), c1), min(max(r1, c0), c1)
            parts = [(c0, a), (b, c1)]
        else:
            a = b = c0
            parts = [(c0, c1)]
        kk = min(topk, mc)
        if kernel is not None:  # the C tail: each row visited once, in cache (row_kernel.c)
            pooled = width and rq
            b0, b1, k0, k1 = (r0 // rq, r1 // rq, c0 // width, c1 // width) if pooled else (0, 0, 0, 0)
            row_kernel.attention_rows(kernel, s, lse_out[:, r0:r1], sums["entropy"][:, r0:r1],
                                      top_v[:, r0:r1], top_i[:, r0:r1],
                                      pyramid[:, b0:b1, k0:k1] if pooled else None,
                                      pyramid_max[:, b0:b1, k0:k1] if pooled else None, width, rq,
                                      distance=sums["distance"][:, r0:r1] if square else None, diag0=r0 - c0,
                                      key0=c0)
            p = s
            if not pooled:
                pool_by_index(p, r0, r1, c0, c1)
        else:
            peak = s.amax(-1, keepdim=True)
            s.sub_(peak)
            p = torch.softmax(s, -1)  # one vectorised pass for exp, sum and normalise
            logz = p.amax(-1, keepdim=True).log_().neg_()  # the row's largest weight is exp(0) / z
            lse_out[:, r0:r1] = (peak + logz).squeeze(-1)
            # entropy -sum p log p = log z - sum p (s - max)
            entropy = logz.squeeze(-1) - torch.einsum("hrm,hrm->hr", p, s)  # (a batched product: no temporary)
            del s
            # pyramid: rows pooled into their query bins, then keys into theirs (queries averaged at the end);
            # pooling rows first (a reduction along the contiguous keys) leaves rq times less for the keys' pooling
            if width and rq:
                rows = p.view(heads, r // rq, rq, mc)
                b0, b1, k0, k1 = r0 // rq, r1 // rq, c0 // width, c1 // width
                pyramid[:, b0:b1, k0:k1] += rows.sum(2).view(heads, b1 - b0, k1 - k0, width).sum(-1)
                cell_max = F.max_pool1d(rows.amax(2), width)
                pyramid_max[:, b0:b1, k0:k1] = torch.maximum(pyramid_max[:, b0:b1, k0:k1], cell_max)
            else:
                pool_by_index(p, r0, r1, c0, c1)
            # top-k: the k largest weights of a row lie in the k blocks whose maxima are largest
            blocks = mc // TOPK_BLOCK
            if blocks > kk:
                full = blocks * TOPK_BLOCK
                bmax = p[:, :, :full].view(heads, r, blocks, TOPK_BLOCK).amax(-1)
                if full < mc:
                    bmax = torch.cat([bmax, p[:, :, full:].amax(-1, keepdim=True)], -1)
                best = torch.topk(bmax, kk, -1).indices  # (heads, r, kk) blocks
                cand = (best[..., None] * TOPK_BLOCK + torch.arange(TOPK_BLOCK, device=device)).flatten(2)
                if full < mc:  # the last block is short: its missing keys never win
                    valid = cand < mc
                    vals = p.gather(-1, cand.clamp(max=mc - 1)).masked_fill_(~valid, -1.0)
                else:
                    vals = p.gather(-1, cand)
                tv, where = torch.topk(vals, kk, -1)
                ti = cand.gather(-1, where)
            else:
                tv, ti = torch.topk(p, kk, -1)
            top_v[:, r0:r1, :kk] = tv
            top_i[:, r0:r1, :kk] = ti + c0
            sums["entropy"][:, r0:r1] = entropy
        if c0 == 0:
            sums["sink"][:, r0:r1] = p[:, :, 0]
        acc = {}
        if kernel is not None:  # the distance came with the C tail: the output is p @ v alone, one product
            if out is not None:
                out[:, r0:r1] = torch.bmm(p.view(kv_heads, group * r, mc), vf[:, c0:c1]).view(heads, r, dv).to(out.dtype)
        elif out is not None or square:  # one product per column block: [v | 1 | j] left of the row block, on it, right of it
            pg = p.view(kv_heads, group * r, mc)
            for (x0, x1) in parts:
                if x1 > x0:
                    acc[x0] = torch.bmm(pg[:, :, x0 - c0:x1 - c0], rhs[:, x0:x1]).view(heads, r, dv + 2)
            if b > a and out is not None:
                acc[a] = torch.bmm(pg[:, :, a - c0:b - c0], rhs[:, a:b]).view(heads, r, dv + 2)
            if out is not None:
                out[:, r0:r1] = sum(acc.values())[..., :dv].to(out.dtype)
        if square:
            i_tok = torch.arange(r0, r1, device=device)
            if kernel is None:
                i_f = i_tok.float()
                left = acc.get(c0, None) if a > c0 else None
                right = acc.get(b, None) if c1 > b else None
                # keys before the row block: sum p (i - j); after it: sum p (j - i); on it: |i - j| explicitly
                distance = torch.zeros(heads, r, device=device)
                if left is not None:
                    distance += i_f * left[..., dv] - left[..., dv + 1]
                if right is not None:
                    distance += right[..., dv + 1] - i_f * right[..., dv]
                if b > a:
                    cs = torch.arange(a, b, device=device)
                    distance += torch.einsum("hrm,rm->hr", p[:, :, a - c0:b - c0],
                                             (i_tok[:, None] - cs[None, :]).abs().float())
                sums["distance"][:, r0:r1] = distance
            # the diagonal and the previous token: diagonals of the chunk's own square (rows whose key is out of
            # view keep 0); the key range always holds the rows' own keys, and the previous ones but for c0 == r0
            sums["diagonal"][:, r0:r1] = torch.diagonal(p[:, :, r0 - c0:r1 - c0], dim1=1, dim2=2)
            first = max(r0, c0 + 1)  # the first row whose previous key is in view
            if first < r1:
                sums["prev_token"][:, first:r1] = torch.diagonal(p[:, first - r0:, first - 1 - c0:r1 - 1 - c0],
                                                                 dim1=1, dim2=2)
            if codes is not None and pairs is not None:
                sel = slice(int(pair_bounds[r0]), int(pair_bounds[r1]))
                for name, shift in (("induction", 0), ("duplicate", 1)):  # duplicate: the occurrence itself
                    pr, pc = pair_rows[sel] - r0, pair_cols[sel] - shift
                    keep = (pc >= c0) & (pc < c1)
                    pr, pc = pr[keep], pc[keep] - c0
                    sums[name][:, r0:r1] = torch.zeros(heads, r, device=device).index_add_(1, pr, p[:, pr, pc])
            elif codes is not None:
                cs = torch.arange(c0, c1, device=device)
                for name, shift in (("induction", 1), ("duplicate", 0)):
                    prev_cols = cs - shift
                    same = (codes[r0:r1, None] == codes[prev_cols.clamp(min=0)][None, :]) & (prev_cols >= 0)[None, :] \
                        & (prev_cols[None, :] < i_tok[:, None])
                    sums[name][:, r0:r1] = torch.einsum("hrm,rm->hr", p, same.float())


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
    path: Optional[str] = None,
    fused_chunk_bytes: Optional[int] = None,
    kernel: Optional[bool] = None,
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
      path: ``"fused"`` (the default on the CPU): small chunks that stay in cache, each row's summaries from
        one pass over its weights (:func:`_fused_rows`), key heads in parallel threads with torch's
        intra-op thread count set to 1 meanwhile (process-wide, restored after); ``"pure"`` (the default on
        GPUs, where the fused path's many small kernels measured 2.5x slower on an H200): the reference loop
        over large chunks, several passes each. Both give the same record within the documented bounds
        (tests/test_long.py, bench/gpu_long_check.sh on CUDA).
      kernel: the fused path's per-row tail in C (:mod:`.row_kernel`) on the CPU: None uses it where it
        compiles, False uses torch's operations, True requires it (RuntimeError where it is missing).
    """
    path = path or ("fused" if q.device.type == "cpu" else "pure")
    if path not in ("fused", "pure"):
        raise ValueError(f"path must be 'fused' or 'pure', got {path!r}")
    heads, n, d = q.shape
    kv_heads, m, _ = k.shape
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads are not a multiple of {kv_heads} key/value heads")
    group = heads // kv_heads
    device = q.device
    store, store_name = _store_dtype(q, k, scaling) if keep_qk else (q.dtype, "float32")
    if keep_qk and store != q.dtype:  # everything is computed from q/k as stored, so a rebuild agrees with lse
        q, k = q.to(store), k.to(store)
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
    pyramid_max = torch.zeros(heads, bq, bk, dtype=torch.float32, device=device)  # weights are >= 0
    # per-row results stay on the device until the end (no transfer per chunk)
    lse_out = torch.empty(heads, n, dtype=torch.float32, device=device)
    top_i = torch.zeros(heads, n, topk, dtype=torch.int32, device=device)
    top_v = torch.zeros(heads, n, topk, dtype=torch.float32, device=device)
    sums = {name: torch.zeros(heads, n, device=device)
            for name in ("entropy", "sink", "distance", "prev_token", "induction", "duplicate", "diagonal")}
    repeated = np.zeros(n, dtype=bool)
    out = None if v is None else torch.empty(heads, n, v.shape[-1], dtype=v.dtype, device=device)
    width = m // bk if m % bk == 0 else 0  # keys per pyramid bin, when the bins are equal

    kf = k.float()
    qs = q.float() * scaling  # scaling folded into the queries: s = qs . k
    lib = None
    if path == "fused" and device.type == "cpu" and kernel is not False:
        lib = row_kernel.load()
        if lib is None and kernel:
            raise RuntimeError("the row kernel is not available (no C compiler, or TBPA_ROW_KERNEL=0)")
    if path == "fused":
        fused_bytes = fused_chunk_bytes or (KERNEL_CHUNK_BYTES if lib is not None else FUSED_CHUNK_BYTES)
        vf32 = None if v is None else v.float()
        # one key/value head (and its query heads) at a time: taller row blocks for the same chunk size
        # make the score product efficient (a few rows of every head made it the slowest step)
        @torch.no_grad()  # grad mode is per thread
        def key_head(g: int) -> None:
            hs = slice(g * group, (g + 1) * group)
            # values contiguous per key head: a model's (batch, heads, n, d) views of (batch, n, heads, d)
            # made the output product's right operand strided (measured slower in a model's capture)
            _fused_rows(qs[hs], kf[g:g + 1], None if vf32 is None else vf32[g:g + 1].contiguous(),
                        None if out is None else out[hs], pyramid[hs], pyramid_max[hs], lse_out[hs], top_i[hs], top_v[hs],
                        {name: a[hs] for name, a in sums.items()}, causal=causal, sliding_window=sliding_window,
                        softcap=softcap, codes=codes, qbin=qbin, kbin=kbin, topk=topk,
                        chunk_bytes=fused_bytes, kernel=lib)

        workers = min(torch.get_num_threads(), kv_heads) if device.type == "cpu" else 1
        if workers > 1:
            # key heads in parallel threads, each operation on one core: a chunk's operations are too small
            # to share cores well (measured: 2 intra-op threads ran a layer hardly faster than one); the heads
            # write disjoint slices, and torch releases the GIL inside each operation
            with _intra_op_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="attention-heads") as pool:
                list(pool.map(key_head, range(kv_heads)))
        else:
            for g in range(kv_heads):
                key_head(g)
    else:
        for r0 in range(0, n, rows_per_chunk):
            r1 = min(n, r0 + rows_per_chunk)
            r = r1 - r0
            c0, c1 = visible_keys(r0, r1, offset, m, causal, sliding_window, width)
            mc = c1 - c0
            cs = cols[c0:c1]
            qc = qs[:, r0:r1].reshape(kv_heads, group * r, d)  # heads of a key group are consecutive
            s = torch.bmm(qc, kf.transpose(1, 2)[:, :, c0:c1]).reshape(heads, r, mc)
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
                blocks = e.reshape(heads, r, mc // width, width)
                pyramid[:, :, c0 // width:c1 // width].index_add_(1, qbin[r0:r1], blocks.sum(-1).div_(z))
                _max_into(pyramid_max[:, :, c0 // width:c1 // width], 1, qbin[r0:r1], blocks.amax(-1).div_(z))
            else:
                pooled = torch.zeros(heads, r, bk, dtype=torch.float32, device=device).index_add_(2, kbin[c0:c1], e)
                pyramid.index_add_(1, qbin[r0:r1], pooled.div_(z))
                peaks = _max_into(torch.zeros(heads, r, bk, dtype=torch.float32, device=device), 2, kbin[c0:c1], e)
                _max_into(pyramid_max, 1, qbin[r0:r1], peaks.div_(z))
            kk = min(topk, mc)
            tv, ti = torch.topk(e, kk, dim=-1)
            lse_out[:, r0:r1] = lse
            top_v[:, r0:r1, :kk] = tv / z
            top_i[:, r0:r1, :kk] = ti + c0
            # per-row sums for the metrics (metrics.row_sums, on the device)
            if softcap:
                p = e / z
                entropy = -torch.special.xlogy(p, p).sum(-1)
                del p
            else:  # -sum p log p = lse - sum_j p_ij s_ij, and sum_j p_ij s_ij = qs_i . (e @ k)_i / z_i: a small product
                ps = (qc * torch.bmm(eg, kf[:, c0:c1])).sum(-1).reshape(heads, r) / zr
                entropy = lse - ps
            sums["entropy"][:, r0:r1] = entropy
            if c0 == 0:
                sums["sink"][:, r0:r1] = (e[:, :, 0] / zr)
            i_tok = torch.arange(r0, r1, device=device)
            if square:
                if causal:  # every visible key is at or before the row: sum_j p_ij (i - j) = i - sum_j p_ij j
                    expected_key = torch.bmm(eg, cs.float()[None, :, None].expand(kv_heads, mc, 1)).reshape(heads, r)
                    distance = i_tok.float()[None, :] - expected_key / zr
                else:
                    distance = torch.einsum("hrm,rm->hr", e, (i_tok[:, None] - cs[None, :]).abs().float()) / zr
                sums["distance"][:, r0:r1] = distance
                has_prev = (i_tok >= 1) & (i_tok - 1 >= c0) & (i_tok - 1 < c1)
                prev = torch.zeros(heads, r, device=device)
                idx = torch.nonzero(has_prev).flatten()
                if idx.numel():
                    prev[:, idx] = e[:, idx, i_tok[idx] - 1 - c0]
                sums["prev_token"][:, r0:r1] = (prev / zr)
                on_diag = torch.nonzero((i_tok >= c0) & (i_tok < c1)).flatten()
                if on_diag.numel():
                    diagonal = torch.zeros(heads, r, device=device)
                    diagonal[:, on_diag] = e[:, on_diag, i_tok[on_diag] - c0]
                    sums["diagonal"][:, r0:r1] = (diagonal / zr)
                if codes is not None:
                    i_codes = codes[r0:r1]
                    # induction targets [i, j]: token j - 1 equals token i and j - 1 < i (j in c0..c1);
                    # duplicate targets: token j itself equals token i, j < i
                    for name, shift in (("induction", 1), ("duplicate", 0)):
                        prev_cols = cs - shift
                        valid = prev_cols >= 0
                        same = (i_codes[:, None] == codes[prev_cols.clamp(min=0)][None, :]) & valid[None, :] \
                            & (prev_cols[None, :] < i_tok[:, None])
                        sums[name][:, r0:r1] = (torch.einsum("hrm,rm->hr", e, same.float()) / zr)
            del e, eg

    if codes is not None:  # a row counts for induction when its token occurred before it (seen or not)
        host = codes.cpu().numpy()
        first = np.full(int(host.max()) + 1, n)
        np.minimum.at(first, host, np.arange(n))
        repeated = first[host] < np.arange(n)
    counts = torch.bincount(qbin, minlength=bq).float()
    pyramid = (pyramid / counts[None, :, None]).cpu().numpy()
    lse_out, top_v = lse_out.cpu().numpy(), top_v.cpu().numpy()
    top_i = top_i.cpu().numpy().astype(np.uint32)
    sums = {name: a.double().cpu().numpy() for name, a in sums.items()}
    rows = dict(sums, repeated=repeated, has_tokens=codes is not None)
    if codes is not None and causal:  # the top-k's first key is each row's largest weight
        rows["retrieval"], rows["copyable"] = metrics_mod.retrieval_rows(top_i[:, :, 0], codes.cpu().numpy())
    metrics = metrics_mod.metrics_from_rows(rows, n, m, causal=bool(causal))
    layer = fmt.LongLayer(
        queries=_to_numpy(q, store) if keep_qk else None,
        keys=_to_numpy(k, store) if keep_qk else None,
        qk_dtype=store_name,
        lse=lse_out,
        k_len=m,
        pyramid=pyramid.astype(np.float32),
        pyramid_max=pyramid_max.cpu().numpy(),
        topk_index=top_i,
        topk_value=top_v,
        metrics={name: metrics[name] for name in metrics_mod.METRIC_NAMES},
        info=dict(info or {}, scaling=float(scaling), causal=bool(causal), softcap=softcap,
                  sliding_window=sliding_window),
    )
    return layer, out


@contextlib.contextmanager
def _intra_op_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` for the block (process-wide), restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def summarize_numpy(q: np.ndarray, k: np.ndarray, **kwargs: Any) -> fmt.LongLayer:
    """:func:`summarize` for numpy (or torch CPU) inputs, for the writer API (no output)."""
    qt = q if isinstance(q, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(q))
    kt = k if isinstance(k, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(k))
    return summarize(qt, kt, **kwargs)[0]


def default_scaling(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
