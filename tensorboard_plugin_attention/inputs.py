"""What the writer accepts as one example, made into an :class:`Example`: the input forms (a capture, one
forward, one example, per-layer tensors, a dict per kind, queries/keys alone), recognised by type
(``records``), validated (each kind by its layout's handler, ``layouts``), layers/heads selected, metrics.

numpy only: torch tensors are accepted (converted with ``.detach().cpu().numpy()``) but torch is never imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import format as fmt
from . import layouts
from .records import CaptureRecord, ExampleAttention, ForwardRecord, LayerArrays
from .validation import all_finite, check_layer_info, indices, is_int, qk_array, to_numpy, token_list

__all__ = ["Example", "QKLayers", "example_metrics", "layers_from_tuple", "normalise", "select", "validate"]


@dataclass


class Example:
    """One example, validated and ready to encode (``summary.build_record``)."""

    sequences: dict[str, list[str]]
    kinds: dict[str, list[Any]]  # records.LayerArrays (dense) or records.LongLayer, one layout per kind
    kind_sequences: dict[str, tuple[str, str]] = field(default_factory=dict)
    ids: dict[str, dict] = field(default_factory=dict)  # kind -> layer_ids / head_ids kept (layers=, heads=)


def layers_from_tuple(
    attention: Any, queries: Any, keys: Any, batch_index: int, kind: str
) -> list[LayerArrays]:
    """Per-layer tensors as transformers returns them (``output_attentions=True``): (batch, H, q, k) each."""
    if attention is None or (isinstance(attention, (tuple, list)) and len(attention) == 0):
        raise ValueError(
            f"no {kind} attention given (empty or None): models running sdpa/flash attention return no "
            "attention weights. Record them with `with capture_attention(model) as cap:` or load the model "
            "with attn_implementation='eager' and pass output_attentions=True."
        )
    if not isinstance(attention, (tuple, list)):
        attention = [attention[i] for i in range(len(attention))] if _ndim(attention) == 5 else [attention]
    for name, qk in (("queries", queries), ("keys", keys)):
        if qk is not None and (not isinstance(qk, (tuple, list)) or len(qk) != len(attention)):
            raise ValueError(f"{name} must be a sequence with one tensor per layer ({len(attention)} layers)")
    if (queries is None) != (keys is None):
        raise ValueError("pass both queries and keys, or neither")
    layers = []
    for i, a in enumerate(attention):
        if a is None:
            raise ValueError(f"{kind} attention of layer {i} is None: the model did not return attention weights "
                             "(use capture_attention or attn_implementation='eager')")
        arr = to_numpy(a, f"{kind} attention layer {i}")
        q = k = None
        if queries is not None:
            q, k = to_numpy(queries[i], f"queries layer {i}"), to_numpy(keys[i], f"keys layer {i}")
        if arr.ndim == 4:
            if not 0 <= batch_index < arr.shape[0]:
                raise ValueError(f"batch_index {batch_index} out of range: the batch has {arr.shape[0]} examples")
            arr = arr[batch_index]
            if q is not None:
                if q.ndim != 4 or k.ndim != 4:
                    raise ValueError(f"queries/keys of layer {i} must be (batch, heads, len, head_dim) like the attention")
                q, k = q[batch_index], k[batch_index]
        elif arr.ndim != 3:
            raise ValueError(
                f"{kind} attention of layer {i} has shape {arr.shape}: expected (batch, heads, q_len, k_len) "
                "or (heads, q_len, k_len)"
            )
        elif batch_index != 0:
            raise ValueError(f"batch_index={batch_index} but {kind} attention of layer {i} has shape {arr.shape} "
                             "(heads, q_len, k_len): one example, no batch dimension. Leave batch_index out, or "
                             "pass the batch (batch, heads, q_len, k_len)")
        layers.append(LayerArrays(arr, q, k, {}))
    return layers


def _ndim(x: Any) -> int:
    return len(getattr(x, "shape", ()))


def normalise(
    attention: Any,
    tokens: Sequence[str],
    *,
    batch_index: int,
    queries: Any,
    keys: Any,
    key_tokens: Optional[Sequence[str]],
    decoder_tokens: Optional[Sequence[str]],
    kind: Optional[str],
    layer_info: Any = None,
) -> Example:
    """Turn any accepted ``attention`` input into an ``Example`` (kinds -> layers, sequences)."""
    positions: Mapping[str, Any] = {}
    if isinstance(attention, CaptureRecord):
        if not attention.forwards:  # (its ``last`` raises IndexError then)
            raise ValueError("the capture recorded no forward pass: run the model inside `with capture_attention(model)`")
        attention = attention.forwards[-1]
    if isinstance(attention, ForwardRecord):
        n = attention.batch_size
        if not 0 <= batch_index < n:
            raise ValueError(f"batch_index {batch_index} out of range: the captured batch has {n} examples")
        attention = attention.example(batch_index)
    if isinstance(attention, ExampleAttention):
        if queries is not None or keys is not None:
            raise ValueError("queries/keys come with the capture: do not pass them separately")
        positions = attention.positions or {}
        kinds = {k: [layouts.of_layer(l).input_layer(l, k, i) for i, l in enumerate(layers)]
                 for k, layers in attention.kinds.items() if layers}
        if not kinds:
            raise ValueError("the capture recorded no attention layers: does the model route attention through "
                             "transformers' attention interface? (see README: supported models)")
    elif isinstance(attention, Mapping):
        kinds = {}
        for k, v in attention.items():
            if isinstance(v, (list, tuple)) and v and all(layouts.LONG.holds(l) for l in v):  # summarized already
                kinds[k] = [layouts.LONG.input_layer(l, k, i) for i, l in enumerate(v)]
                continue
            q = None if queries is None else queries.get(k)
            kk = None if keys is None else keys.get(k)
            kinds[k] = layers_from_tuple(v, q, kk, batch_index, k)
    elif attention is None and queries is not None:  # queries and keys only: long layers summarized from them
        if kind is None:
            kind = "cross" if key_tokens is not None else "encoder"
        kinds = {kind: QKLayers(queries, keys, batch_index, kind, layer_info)}
    else:
        if kind is None:
            kind = "cross" if key_tokens is not None else "encoder"
        kinds = {kind: layers_from_tuple(attention, queries, keys, batch_index, kind)}

    for k in kinds:
        if k not in fmt.KINDS:
            raise ValueError(f"unknown attention kind {k!r}: expected one of {', '.join(fmt.KINDS)}")

    tokens = token_list(tokens, "tokens")
    two_stacks = "cross" in kinds or decoder_tokens is not None
    if "cross" in kinds and "encoder" not in kinds and "decoder" not in kinds and key_tokens is not None:
        # Only cross attention given: `tokens` are the decoder (query) tokens, `key_tokens` the encoder's.
        sequences = {"input": token_list(key_tokens, "key_tokens"), "output": tokens}
    else:
        sequences = {"input": tokens}
        if two_stacks:
            if decoder_tokens is None:
                raise ValueError("encoder-decoder attention needs decoder_tokens (the decoder's input tokens)")
            sequences["output"] = token_list(decoder_tokens, "decoder_tokens")
        elif key_tokens is not None:
            raise ValueError("key_tokens is only for cross attention (pass kind='cross' or a capture with cross layers)")
    for name, pos in positions.items():  # capture trimmed padding: trim full-length token lists the same way
        seq = sequences.get(name)
        pos = np.asarray(pos)
        if seq is not None and len(seq) != len(pos) and pos.size and len(seq) > int(pos.max()):
            sequences[name] = [seq[int(i)] for i in pos]
    kind_sequences = fmt.kind_sequences(kinds, two_stacks=two_stacks)
    for k, layers in kinds.items():
        if isinstance(layers, QKLayers):  # now that the tokens are known (the induction metric reads them)
            kinds[k] = layers.summarize(_self_tokens(sequences, kind_sequences[k]))
    return Example(sequences, kinds, kind_sequences)


class QKLayers:
    """Per-layer queries/keys given without attention (``log_attention(writer, tag, None, tokens, step,
    queries=..., keys=..., layer_info=...)``): checked now, summarized as long layers once the tokens are
    known (``long_layers.summarize``, torch imported only then)."""

    def __init__(self, queries: Any, keys: Any, batch_index: int, kind: str, layer_info: Any):
        if keys is None:
            raise ValueError("queries without keys: pass both (per layer), or the attention probabilities")
        if not isinstance(queries, (list, tuple)) or not isinstance(keys, (list, tuple)) or len(queries) != len(keys) \
                or not queries:
            raise ValueError("queries and keys must be sequences with one tensor per layer, of the same length")
        infos = layer_info if isinstance(layer_info, (list, tuple)) else [layer_info or {}] * len(queries)
        if len(infos) != len(queries) or not all(isinstance(i, Mapping) for i in infos):
            raise ValueError("layer_info must be a dict (for every layer) or one dict per layer")
        self.layers = []
        for i, (q, k, info) in enumerate(zip(queries, keys, infos)):
            q, k = qk_array(q, f"queries layer {i}"), qk_array(k, f"keys layer {i}")
            if q.ndim == 4 and k.ndim == 4:
                if not 0 <= batch_index < q.shape[0]:
                    raise ValueError(f"batch_index {batch_index} out of range: the batch has {q.shape[0]} examples")
                q, k = q[batch_index], k[batch_index]
            elif batch_index != 0 and q.ndim == 3:
                raise ValueError(f"batch_index={batch_index} but queries of layer {i} have shape {tuple(q.shape)} "
                                 "(heads, q_len, head_dim): one example, no batch dimension. Leave batch_index out, "
                                 "or pass the batch (batch, heads, q_len, head_dim)")
            if q.ndim != 3 or k.ndim != 3 or q.shape[2] != k.shape[2] or q.shape[0] % max(1, k.shape[0]) \
                    or 0 in q.shape or 0 in k.shape:
                raise ValueError(f"{kind} layer {i}: queries {q.shape} / keys {k.shape} must be (heads, q_len, "
                                 "head_dim) / (kv_heads, k_len, head_dim), heads a multiple of kv_heads")
            if not (all_finite(q) and all_finite(k)):
                raise ValueError(f"{kind} layer {i}: queries or keys contain NaN or Inf")
            unknown = set(info) - {"scaling", "causal", "sliding_window", "softcap", "module_name"}
            if unknown:
                raise ValueError(f"layer_info: unknown keys {sorted(unknown)} (scaling, causal, sliding_window, "
                                 "softcap, module_name)")
            facts = check_layer_info(info)
            window = facts.get("sliding_window")
            if window is not None and (not is_int(window) or window < 1):
                raise ValueError(f"layer_info sliding_window must be a positive integer, got {window!r}")
            scaling = facts.get("scaling")
            if scaling is not None and not (isinstance(scaling, (int, float)) and math.isfinite(scaling) and scaling > 0):
                raise ValueError(f"layer_info scaling must be a positive number, got {scaling!r}")
            facts["causal"] = bool(facts.get("causal")) if facts.get("causal") is not None else kind == "decoder"
            if facts["causal"] and q.shape[1] > k.shape[1]:
                raise ValueError(f"{kind} layer {i}: causal attention needs q_len <= k_len, got {q.shape[1]} > {k.shape[1]}")
            self.layers.append((q, k, facts))
        shape0 = (self.layers[0][0].shape, self.layers[0][1].shape)
        if any((q.shape, k.shape) != shape0 for q, k, _ in self.layers):
            raise ValueError(f"{kind}: every layer's queries/keys must have the shapes of layer 0's {shape0}")

    def summarize(self, token_ids: Optional[Sequence[str]]) -> list:
        from . import long_layers

        out = []
        for q, k, facts in self.layers:
            if token_ids is not None and len(token_ids) != q.shape[1]:
                raise ValueError(f"queries have {q.shape[1]} positions but there are {len(token_ids)} tokens: pass one "
                                 "token per position")
            scaling = facts.get("scaling") or 1.0 / math.sqrt(q.shape[-1])
            out.append(long_layers.summarize_numpy(
                q, k, scaling=scaling, causal=facts["causal"], sliding_window=facts.get("sliding_window"),
                softcap=facts.get("softcap"), token_ids=token_ids if q.shape[1] == k.shape[1] else None,
                info={"module_name": facts.get("module_name"), "position_bias": False}))
        return out


def select(ex: Example, layers: Optional[Sequence[int]], heads: Optional[Sequence[int]]) -> dict:
    """Keep only ``layers`` / ``heads`` (model indices) of every kind; returns the ids kept per kind."""
    ids: dict = {}
    for kind, items in list(ex.kinds.items()):
        n_layers, n_heads = len(items), items[0].shape[0]
        keep_l = indices(layers, n_layers, "layers")
        keep_h = indices(heads, n_heads, "heads")
        if keep_l is None and keep_h is None:
            continue
        keep_l = keep_l if keep_l is not None else list(range(n_layers))
        layout = layouts.of_layers(items)
        ex.kinds[kind] = [layout.select_heads(items[i], keep_h) for i in keep_l]
        ids[kind] = {"layer_ids": keep_l, "head_ids": keep_h if keep_h is not None else list(range(n_heads))}
    return ids


def validate(ex: Example, sentence_b_start: Optional[int]) -> None:
    """Check shapes, token counts and values; raises ValueError saying what is wrong and how to fix it."""
    for kind, layers in ex.kinds.items():
        qseq, kseq = ex.kind_sequences[kind]
        nq, nk = len(ex.sequences[qseq]), len(ex.sequences[kseq])
        ex.kinds[kind] = layouts.of_layers(layers).validate(kind, layers, qseq, nq, kseq, nk)
    if sentence_b_start is not None:
        n = len(ex.sequences["input"])
        if not isinstance(sentence_b_start, (int, np.integer)) or isinstance(sentence_b_start, bool) \
                or not 0 < sentence_b_start < n:
            raise ValueError(f"sentence_b_start must be an index in 1..{n - 1} (the first token of sentence B), "
                             f"got {sentence_b_start!r}")


def example_metrics(ex: Example) -> dict:
    """Per-head metrics per kind (``{kind: {name: [[per head] per layer]}}``), NaN as null."""
    out: dict = {}
    for kind, layers in ex.kinds.items():
        causal = None
        if layers and layers[0].info and layers[0].info.get("causal") is not None:
            causal = bool(layers[0].info["causal"])
        values = layouts.of_layers(layers).metrics(layers, _self_tokens(ex.sequences, ex.kind_sequences[kind]), causal)
        out[kind] = {name: [[None if not np.isfinite(v) else round(float(v), 6) for v in row] for row in arr]
                     for name, arr in values.items()}
    return out


def _self_tokens(sequences: Mapping[str, list], seqs: tuple) -> Optional[list]:
    """The tokens of self-attention (queries and keys over one sequence; the induction metric reads them),
    None for attention between two sequences."""
    qseq, kseq = seqs
    return sequences[qseq] if qseq == kseq else None
