"""Structured synthetic attention for benchmarks at lengths real small models do not reach (2048).

Not a blank or random matrix: each head mixes a local window, an attention sink on token 0, a few
long-range links and a faint diffuse background, with per-head widths, like trained models' heads.
"""

from __future__ import annotations

import numpy as np


def structured_attention(layers: int, heads: int, n: int, *, causal: bool = False, seed: int = 0) -> np.ndarray:
    """``(layers, heads, n, n)`` float32 probabilities, rows summing to 1."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    out = np.empty((layers, heads, n, n), np.float32)
    for l in range(layers):
        for h in range(heads):
            width = 1 + (l * heads + h) % 8
            offset = rng.integers(-2, 3)
            logits = -np.abs(i - j - offset) / width  # local window around i - offset
            logits = logits + (j == 0) * rng.uniform(0, 4)  # sink
            links = rng.integers(0, n, size=(max(1, n // 64), 2))
            logits[links[:, 0], links[:, 1]] += 6.0  # long-range links
            logits = logits + rng.normal(scale=0.3, size=(n, n))  # background
            if causal:
                logits = np.where(j <= i, logits, -np.inf)
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            out[l, h] = p / p.sum(axis=1, keepdims=True)
    return out


def structured_qk(layers: int, heads: int, n: int, head_dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 queries and keys ``(layers, heads, n, head_dim)`` of plausible magnitude."""
    rng = np.random.default_rng(seed + 1)
    shape = (layers, heads, n, head_dim)
    return rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
