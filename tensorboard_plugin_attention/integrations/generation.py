"""Attention of ``model.generate(...)``: one matrix per layer over prompt + generated tokens.

With its KV cache, ``generate`` runs one forward over the prompt and then one forward per new token, each with
a single query row. Under ``capture_attention`` that is one ``CapturedForward`` per step;
``generation_attention`` stitches them back into what a single forward over the whole sequence would have
recorded::

    with capture_attention(model) as cap:
        out = model.generate(**batch, max_new_tokens=20, do_sample=False)
    ex = generation_attention(cap, batch_index=0)
    log_attention(writer, "generate", ex, tokenizer.convert_ids_to_tokens(out[0]), step)

Rows: the prompt's rows come from the first forward, then one row per generated token, zero-padded on the
right to the full length (causal: a row still sums to 1). Queries: the prompt's, then each step's new query.
Keys: the last step's, which cover every position (the cache hands back all earlier keys).

Coverage: ``generate`` never runs the model on the token it generates last (its logits would only choose the
token after it), so the matrix covers the prompt and all generated tokens but the last. The example's
``positions`` are indices into the output sequence (``out[i]``, padding included): ``log_attention`` trims a
token list of the output's length to them, dropping padding and that last token.

Supported: greedy search and sampling with the default dynamic cache (``num_beams=1``), decoder-only and
encoder-decoder models (encoder attention from the encoder's forward; decoder self- and cross-attention
stitched per step). Beam search reorders the cache between steps and a static cache has a fixed key length:
both raise ``ValueError``.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["LastTokenWarning", "generation_attention"]


def _forwards(capture: Any) -> list:
    if hasattr(capture, "forwards"):
        return list(capture.forwards)
    if isinstance(capture, Sequence):
        return list(capture)
    raise ValueError("pass the AttentionCapture of a generate() call (or a list of its CapturedForwards)")


def _kinds(fwd: Any) -> set:
    return {k for k, v in fwd.layers.items() if v}


def generation_attention(capture: Any, batch_index: int = 0, *, forwards: Optional[Sequence[Any]] = None) -> Any:
    """Assemble the attention of a captured ``generate()`` call for one example of the batch.

    Args:
      capture: the ``AttentionCapture`` the ``generate`` call ran under (holding that call only: call
        ``cap.clear()`` between calls), or a list of its ``CapturedForward`` objects.
      batch_index: which sequence of the batch.
      forwards: the forwards to use instead of ``capture.forwards``.

    Returns an ``ExampleAttention`` (``kinds``, ``positions``; numpy, padding trimmed), accepted by
    ``log_attention`` / ``AttentionWriter.add_attention`` like ``cap.last.example(i)``; logged without
    ``example=``, it is named after ``batch_index`` (``"0"``, ``"1"``, ...), so each sequence of a batch is its
    own example.

    The last generated token is **not** included: ``generate`` never runs the model on it, so there is no
    query row and no key for it. ``positions`` stop one token before the end of the output (``out[i]``);
    ``log_attention`` trims a full-length token list to them. A ``LastTokenWarning`` says so once per
    process. To cover a token, generate one more (``max_new_tokens + 1``).
    """
    from ..capture import ExampleAttention, LayerArrays

    fwds = _forwards(capture if forwards is None else forwards)
    if not fwds:
        raise ValueError("the capture recorded no forward pass: call generate() inside `with capture_attention(model)`")
    enc_fwds = [f for f in fwds if f.is_encoder_decoder and _kinds(f) == {"encoder"}]
    dec_fwds = [f for f in fwds if "decoder" in _kinds(f)]
    if len(enc_fwds) > 1:
        raise ValueError(f"the capture holds {len(enc_fwds)} encoder passes: it spans several generate() calls; "
                         "pass the forwards of one call (or cap.clear() between calls)")
    if not dec_fwds:
        raise ValueError("no decoder (causal self-attention) forward was captured: is this a generate() call?")
    steps = [f.example(batch_index) for f in dec_fwds]

    kinds: dict[str, list] = {}
    first = steps[0]
    for kind in ("decoder", "cross"):
        if kind not in first.kinds:
            continue
        layers = []
        for li, layer0 in enumerate(first.kinds[kind]):
            h, p, k0 = layer0.attention.shape
            if kind == "decoder" and p != k0:
                raise ValueError(f"the first captured forward has {p} queries and {k0} keys: it is not the prompt "
                                 "pass of a generate() call (was the capture entered mid-generation?)")
            rows, queries = [layer0.attention], [layer0.queries]
            for t, ex in enumerate(steps[1:], 1):
                lay = ex.kinds[kind][li]
                _, q_len, k_len = lay.attention.shape
                want = p + t if kind == "decoder" else k0
                if q_len != 1 or k_len != want:
                    raise ValueError(
                        f"generation step {t}: {kind} layer {li} has {q_len} queries and {k_len} keys, expected 1 "
                        f"and {want}: only KV-cached greedy/sampling generate() calls with a dynamic cache can be "
                        "assembled (no beam search, no static cache), one call per capture (cap.clear() between)")
                rows.append(lay.attention)
                queries.append(lay.queries)
            n = p + len(steps) - 1
            width = n if kind == "decoder" else k0
            att = np.zeros((h, n, width), dtype=np.float32)
            r = 0
            for a in rows:
                att[:, r:r + a.shape[1], :a.shape[2]] = a
                r += a.shape[1]
            last = steps[-1].kinds[kind][li]
            qk = all(q is not None for q in queries) and last.keys is not None
            layers.append(LayerArrays(
                attention=att,
                queries=np.ascontiguousarray(np.concatenate(queries, axis=1)) if qk else None,
                keys=np.ascontiguousarray(last.keys) if qk else None,
                info=dict(layer0.info),
            ))
        kinds[kind] = layers

    positions = dict(steps[-1].positions)
    if enc_fwds:
        enc = enc_fwds[0].example(batch_index)
        kinds = {"encoder": enc.kinds["encoder"], **kinds}
        positions["input"] = enc.positions["input"]
    _warn_last_token_once()
    return ExampleAttention(kinds=kinds, positions=positions, model_name=getattr(first, "model_name", ""),
                            is_encoder_decoder=getattr(first, "is_encoder_decoder", False), batch_index=batch_index)


class LastTokenWarning(UserWarning):
    """``generation_attention`` leaves out the last generated token (no forward pass ran on it)."""


_warned = False


def _warn_last_token_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            "generation_attention: the last generated token has no attention (generate() never runs the model on "
            "it: its logits would only choose the token after it), so the matrix ends one token earlier and "
            "log_attention trims the token list to ex.positions. To include it, generate one token more. "
            "(Warned once per process; filter LastTokenWarning to silence.)", LastTokenWarning, stacklevel=3)
