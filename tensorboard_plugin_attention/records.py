"""The input records of the writer, numpy only: what ``capture_attention`` produces and ``log_attention`` takes.

* :class:`LayerArrays` — one dense layer of one example (the attention probabilities, optional q/k);
* :class:`LongLayer` — one long layer of one example (q/k, log-sum-exp, pyramid, top-k, metrics: format v3);
* :class:`ExampleAttention` — every layer of one example, padding trimmed;
* :class:`ForwardRecord` / :class:`CaptureRecord` — what ``capture.CapturedForward`` (a batch) and
  ``capture.AttentionCapture`` (the forwards recorded) are, so that the writer recognises them with
  ``isinstance`` without importing torch.

Importing this module imports neither torch nor tensorboard.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["CaptureRecord", "ExampleAttention", "ForwardRecord", "LayerArrays", "LongLayer", "is_long"]


@dataclass
class LayerArrays:
    """One layer of one example: attention ``(H, q, k)``, optional queries ``(H, q, d)`` / keys ``(H, k, d)``
    and value norms ``(H, k)`` (``||v_j W_O^h||`` of each key, format v5: value-weighted attention)."""

    attention: np.ndarray
    queries: Optional[np.ndarray] = None
    keys: Optional[np.ndarray] = None
    info: Optional[dict] = None
    value_norms: Optional[np.ndarray] = None

    @property
    def shape(self) -> tuple:
        """(heads, q_len, k_len) of the attention."""
        return tuple(self.attention.shape)


@dataclass
class LongLayer:
    """One long layer of one example (see ``long_layers.summarize``): exact from q/k + lse, summarized by a
    pyramid, per-row top-k and metrics. ``queries``/``keys`` are None when not kept (summaries only)."""

    queries: Optional[np.ndarray]  # (H, n, d) float16 / float32, or uint16 bfloat16 bits (qk_dtype)
    keys: Optional[np.ndarray]  # (kv_heads, m, d), one per key/value head
    qk_dtype: str
    lse: np.ndarray  # (H, n) float32, natural log
    k_len: int  # m
    pyramid: np.ndarray  # (H, bq, bk) float32 pooled means (rows sum to 1)
    topk_index: np.ndarray  # (H, n, K) uint32 key indices
    topk_value: np.ndarray  # (H, n, K) float32 weights, descending
    metrics: dict  # name -> (H,) float64
    info: Optional[dict] = None
    value_norms: Optional[np.ndarray] = None  # (H, m) float32 ||v_j W_O^h|| (format v5), or None
    pyramid_max: Optional[np.ndarray] = None  # (H, bq, bk) float32 largest weight per pyramid cell (format v5)

    @property
    def shape(self) -> tuple:
        """(heads, q_len, k_len) of the attention it stands for."""
        return (*self.lse.shape, self.k_len)


def is_long(layer: Any) -> bool:
    """Whether a layer record is a :class:`LongLayer`."""
    return isinstance(layer, LongLayer)


@dataclass
class ExampleAttention:
    """All attention layers of one example of a batch, padding trimmed.

    ``positions["input"]`` are the kept positions of the encoder / single-stack input, ``positions["output"]``
    those of the decoder input of an encoder-decoder model; ``trim_tokens`` applies them to a token list.
    ``batch_index`` is the example's index in its batch (``log_attention`` names the example after it).
    """

    kinds: dict[str, list[LayerArrays]]
    positions: dict[str, np.ndarray]
    model_name: str = ""
    is_encoder_decoder: bool = False
    batch_index: int | None = None
    image_layout: Any = None  # images.PatchLayout the capture derived from a vision model's config, or None

    def trim_tokens(self, sequence_name: str, tokens: Sequence[Any]) -> list[Any]:
        """Keep the tokens of ``sequence_name`` ("input" / "output") at the kept positions.

        ``tokens`` is the padded token list; an already trimmed list (same length as the kept positions) is
        returned unchanged.
        """
        pos = self.positions[sequence_name]
        tokens = list(tokens.tolist() if hasattr(tokens, "tolist") else tokens)
        if len(pos) == 0:
            return []
        if int(pos.max()) < len(tokens):
            return [tokens[int(p)] for p in pos]
        if len(tokens) == len(pos):
            return tokens
        raise ValueError(
            f"{len(tokens)} tokens for sequence {sequence_name!r} do not match its positions (max {int(pos.max())})"
        )


class ForwardRecord(abc.ABC):
    """A batch of examples' attention from one forward pass (``capture.CapturedForward``)."""

    @property
    @abc.abstractmethod
    def batch_size(self) -> int:
        """How many examples the batch holds."""

    @abc.abstractmethod
    def example(self, i: int) -> ExampleAttention:
        """Example ``i`` of the batch, padding trimmed."""


class CaptureRecord(abc.ABC):
    """The forward passes recorded so far, oldest first, in ``forwards`` (``capture.AttentionCapture``)."""

    forwards: list
