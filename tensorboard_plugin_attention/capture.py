"""Record attention probabilities, queries and keys while a PyTorch / transformers model runs.

Usage::

    with capture_attention(model) as cap:
        model(**batch)
    ex = cap.last.example(0)           # numpy, padding trimmed
    ex.kinds["encoder"][0].attention   # (heads, q, k) for the first encoder layer

How it works
------------
transformers 5 routes every attention layer through ``AttentionInterface``: the module calls
``ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)`` with the
queries and keys *after* the head split and rotary embedding. On import this module registers a private
implementation name (``_IMPL_NAME``) both in ``AttentionInterface`` and in ``AttentionMaskInterface`` (with
transformers' ``eager_mask``: without a mask function registered, the mask builders return ``None`` for an
unknown name, silently dropping causal and padding masks). On enter the model is switched to that name with
``model.set_attn_implementation`` (in 5.24 it reaches sub-configs such as ``text_config`` / ``vision_config``
and sub-models with their own config copy, e.g. T5's encoder/decoder stacks; older 5.x releases skipped the
latter, so every ``PreTrainedModel`` inside that is not switched yet is switched on its own); on exit (also on
exception) the ``_attn_implementation`` of every config reachable from the model is put back as it was, mixed
implementations included. ``set_attn_implementation`` does not raise for a model that cannot switch (it only
logs), so the switch is checked afterwards. The registered function calls the *eager* attention
function of the calling module's own Python module (``eager_attention_forward``, looked up along the class'
MRO), with the very same arguments, so the model output is that of eager attention (equal to sdpa within float
tolerance), and records from the weights it returns. Using the model's own eager function matters: LLaMA's does
``repeat_kv`` for grouped-query keys, T5's adds ``position_bias``, BERT's would break on grouped keys.

Outputs equal the original implementation's within float tolerance except at query positions whose whole
attention row is masked (left padding in causal models): eager and sdpa differ there, with or without capture.
GPT-2's ``reorder_and_upcast_attn`` is only honoured by transformers for the literal ``"eager"`` name, so it is
not applied while capturing.

In training mode with attention dropout the eager function returns post-dropout weights; to record the
pre-dropout probabilities the eager function is then called twice (once with ``dropout=0.0`` for the record,
once as the model asked for the output), which leaves the output and the RNG stream as without capture.

``torch.nn.MultiheadAttention`` does not go through the interface. It is supported with hooks: a forward
pre-hook forces ``need_weights=True, average_attn_weights=False`` (per-head weights), a forward hook records
them and gives the caller back the output it asked for (``None`` weights or head-averaged ones). Queries and keys
are recomputed from the module's input projections (``bias_k`` and ``add_zero_attn`` are appended the same way
PyTorch does). While capturing, PyTorch's MHA "fast path" (``torch.backends.mha``), which lets
``nn.TransformerEncoderLayer`` bypass the attention module entirely in inference, is switched off.
A model with neither (old-style transformers attention that ignores the interface, or custom attention code)
raises ``TypeError`` on enter: there is no generic way to get its probabilities without re-implementing it.

Kind of a layer call (``LayerRecord.kind``)
------------------------------------------
* ``"cross"`` if the module is cross-attention: its own forward call got a non-``None`` ``key_value_states`` /
  ``encoder_hidden_states`` (BART, T5, Whisper, GPT-2 and BERT-style cross layers: seen by a pre-hook on every
  module that has a ``*Attention*`` class name), or it says so statically (``is_cross_attention=True``, a
  ``CrossAttention`` class name, or a qualified-name tail such as ``encoder_attn`` / ``EncDecAttention`` /
  ``crossattention``). For ``nn.MultiheadAttention``: query and key are not the same tensor.
* else ``"decoder"`` if causal: ``module.is_causal`` (and the config does not turn causality off with
  ``config.is_causal=False``); for ``nn.MultiheadAttention``: ``is_causal=True`` or an ``attn_mask`` whose
  strict upper triangle is fully masked.
* else ``"encoder"``.

``position_bias`` is ``True`` when an additive score bias other than masking enters the softmax: a non-zero
tensor passed as ``position_bias`` / ``alibi`` / ``attention_bias`` / ``relative_position_bias`` keyword (T5's
relative bias; T5 cross-attention gets an all-zero bias, hence ``False``), a module with
``has_relative_attention_bias=True``, or a floating-point mask holding finite values other than 0 and the
"masked" value (ALiBi-style biases folded into the mask). When ``True``, softmax(q·kᵀ·scaling + mask) from the
recorded queries/keys does not reproduce the recorded attention.

Padding and positions
---------------------
A forward pre-hook (with kwargs) on the model and on every ``PreTrainedModel`` inside it groups layer calls per
top-level forward (nested calls such as ``model.encoder`` inside the model do not split it; calling a sub-model
directly, as ``generate`` does with the encoder, starts its own forward) and keeps the 2-D ``attention_mask`` /
``decoder_attention_mask`` it was given. ``CapturedForward.example(i)`` keeps the positions where the mask is 1
(right or left padding). Masks are aligned to the *end* of the recorded sequences, so cached decoding
(``q_len < k_len``, the mask covering past + new tokens) is trimmed correctly too. Without a mask (e.g.
``generate`` drops an all-ones mask) every position is kept. Masks of ``nn.MultiheadAttention`` models
(``key_padding_mask``) and 4-D custom masks are not read; keys without a mask entry are kept.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.modeling_utils import AttentionInterface

from . import format as fmt
from .format import KINDS, LayerArrays  # noqa: F401 - one definition of each, re-exported here
from .records import CaptureRecord, ExampleAttention, ForwardRecord
from .long_layers import DEFAULT_DENSE_LIMIT

__all__ = [
    "AttentionCapture",
    "CapturedForward",
    "ExampleAttention",
    "LayerArrays",
    "LayerRecord",
    "UnsupportedParallelismError",
    "capture_attention",
]

# Private implementation name; must not contain "sdpa", "flash", "flex" or "paged" (transformers branches on them).
_IMPL_NAME = "tb_attention_capture"

# keyword arguments of an attention function that carry an additive score bias
_BIAS_KWARGS = ("position_bias", "alibi", "attention_bias", "relative_position_bias", "rel_pos_bias")
# keyword arguments of an attention *module* forward that make it cross-attention when not None
_CROSS_KWARGS = ("key_value_states", "encoder_hidden_states")
# tail of a qualified module name that denotes cross-attention (BART/Whisper/Marian, T5, GPT-2/BERT, others)
_CROSS_NAME = re.compile(r"(cross|encdec|enc_dec|encoder_attn|src_attn)", re.IGNORECASE)


# --------------------------------------------------------------------------------------------- records


@dataclass
class LayerRecord:
    """One call of one attention layer, batch included (float32 CPU tensors)."""

    kind: str  # "encoder" | "decoder" | "cross"
    layer: int  # index within its kind, in call order during the forward
    attention: torch.Tensor | None  # (batch, heads, q_len, k_len), post-softmax, pre-dropout; None when long
    queries: torch.Tensor | None  # (batch, heads, q_len, head_dim)
    keys: torch.Tensor | None  # (batch, heads, k_len, head_dim), grouped-query keys expanded to query heads
    scaling: float
    causal: bool
    position_bias: bool
    softcap: float | None
    sliding_window: int | None
    module_name: str
    long: list | None = None  # above the dense limit: one format.LongLayer per example (padding trimmed)
    shape: tuple = ()  # (batch, heads, q_len, k_len) of the layer call
    # Where this call sits in the whole model, for records made of several processes' pieces (distributed.py):
    layer_id: int | None = None  # the model's layer index (module.layer_idx, else the name's first number)
    head_offset: int = 0  # the model's id of this call's first head (tensor parallel: this rank's slice)
    total_heads: int | None = None  # heads of the whole layer (None: this call holds them all)
    value_norms: torch.Tensor | None = None  # (batch, heads, k_len) ||v_j W_O^h|| (capture values=True)

    def info(self) -> dict[str, Any]:
        """The per-layer metadata as a plain dict (keys as in ``LayerArrays.info``)."""
        return {
            "scaling": self.scaling,
            "causal": self.causal,
            "position_bias": self.position_bias,
            "softcap": self.softcap,
            "sliding_window": self.sliding_window,
            "module_name": self.module_name,
        }


@dataclass
class CapturedForward(ForwardRecord):
    """The layer calls of one top-level forward.

    ``layers`` maps a kind ("encoder", "decoder", "cross") to its layer calls in order; kinds that did not
    occur are absent (use ``layers.get(kind, [])``).
    """

    layers: dict[str, list[LayerRecord]] = field(default_factory=dict)  # only kinds that occurred
    attention_mask: torch.Tensor | None = None  # (batch, len), CPU
    decoder_attention_mask: torch.Tensor | None = None  # (batch, len), CPU
    model_name: str = ""
    is_encoder_decoder: bool = False
    input_ids: torch.Tensor | None = None  # (batch, len), CPU: the induction metric of long layers reads them
    decoder_input_ids: torch.Tensor | None = None
    config: Any = field(default=None, repr=False)  # the model's config (the patch layout of a vision model)
    pixel_shape: tuple | None = None  # shape of the pixel_values the forward was given, if any

    @property
    def batch_size(self) -> int:
        for mask in (self.attention_mask, self.decoder_attention_mask):
            if mask is not None:
                return int(mask.shape[0])
        for records in self.layers.values():
            if records:
                return int(records[0].shape[0])
        return 0

    def _mask_vector(self, which: str, i: int) -> np.ndarray | None:
        if which == "decoder" and not self.is_encoder_decoder:
            which = "input"  # decoder-only: the input is the decoder's sequence
        mask = self.attention_mask if which == "input" else self.decoder_attention_mask
        return None if mask is None else mask[i].numpy() != 0

    def example(self, i: int) -> ExampleAttention:
        """Example ``i`` of the batch as numpy arrays with padding positions removed."""
        if not 0 <= i < self.batch_size:
            raise IndexError(f"example {i} out of range for batch size {self.batch_size}")
        in_mask = self._mask_vector("input", i)
        out_mask = self._mask_vector("output", i) if self.is_encoder_decoder else None
        masks = self._kind_masks(i)

        kinds: dict[str, list[Any]] = {}
        for kind, records in self.layers.items():
            q_mask, k_mask = masks.get(kind, (None, None))
            arrays = []
            for rec in records:
                if rec.long is not None:  # summarized while the model ran, padding already trimmed
                    arrays.append(rec.long[i])
                    continue
                q_len, k_len = rec.attention.shape[-2:]
                qi = np.flatnonzero(_align(q_mask, q_len))
                ki = np.flatnonzero(_align(k_mask, k_len))
                att = rec.attention[i].numpy()[:, qi][:, :, ki]
                q = None if rec.queries is None else rec.queries[i].numpy()[:, qi]
                k = None if rec.keys is None else rec.keys[i].numpy()[:, ki]
                vn = None if rec.value_norms is None else rec.value_norms[i].numpy()[:, ki]
                arrays.append(LayerArrays(np.ascontiguousarray(att), _contig(q), _contig(k), rec.info(), _contig(vn)))
            kinds[kind] = arrays

        positions = {"input": _positions(in_mask, self._seq_len("input"))}
        if self.is_encoder_decoder:
            positions["output"] = _positions(out_mask, self._seq_len("output"))
        return ExampleAttention(kinds, positions, self.model_name, self.is_encoder_decoder, i,
                                self._image_layout(i, positions["input"]))

    def _image_layout(self, i: int, kept: np.ndarray) -> Any:
        """The patch layout of example ``i`` when the model's config gives it (vision models), else None."""
        if self.config is None or (self.pixel_shape is None and getattr(self.config, "vision_config", None) is None):
            return None
        from .images import layout_from_config

        ids = None
        if self.input_ids is not None and int(kept.max(initial=-1)) < self.input_ids.shape[-1]:
            ids = self.input_ids[i].numpy()[kept]
        try:
            return layout_from_config(self.config, input_ids=ids, pixel_shape=self.pixel_shape)
        except ValueError:  # no square run of image tokens: the caller must say where the patches are
            return None

    def _kind_masks(self, i: int) -> dict:
        """kind -> (query mask, key mask) of example ``i`` (None: keep every position)."""
        in_mask = self._mask_vector("input", i)
        out_mask = self._mask_vector("output", i) if self.is_encoder_decoder else None
        dec_mask = out_mask if self.is_encoder_decoder else in_mask
        return {"encoder": (in_mask, in_mask), "decoder": (dec_mask, dec_mask), "cross": (out_mask, in_mask)}

    def _token_ids(self, kind: str, i: int, q_len: int) -> np.ndarray | None:
        """The input ids of self-attention ``kind`` for example ``i``, aligned to the end like the masks."""
        if kind == "cross":
            return None
        ids = self.decoder_input_ids if kind == "decoder" and self.is_encoder_decoder else self.input_ids
        if ids is None or ids.shape[-1] < q_len:
            return None
        return ids[i, ids.shape[-1] - q_len:].numpy()

    def _seq_len(self, which: str) -> int:
        """Sequence length seen by the layers, for when no mask was given."""
        if which == "input":
            kinds = ("encoder",) if self.is_encoder_decoder else ("encoder", "decoder")
        else:
            kinds = ("decoder",)
        for kind in kinds:
            if self.layers.get(kind):
                return int(self.layers[kind][0].shape[-1])
        if which == "input" and self.layers.get("cross"):
            return int(self.layers["cross"][0].shape[-1])
        return 0


def _align(mask: np.ndarray | None, n: int) -> np.ndarray:
    """Mask for a sequence of length n that ends where the mask ends (cached decoding: q_len < mask length)."""
    if mask is None:
        return np.ones(n, dtype=bool)
    if len(mask) >= n:
        return mask[len(mask) - n :]
    return np.concatenate([np.ones(n - len(mask), dtype=bool), mask])  # keys not covered by the mask (prefixes)


def _positions(mask: np.ndarray | None, length: int) -> np.ndarray:
    return np.arange(length) if mask is None else np.flatnonzero(mask)


def _contig(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.ascontiguousarray(a)


class AttentionCapture(CaptureRecord):
    """What ``capture_attention`` yields: the forwards recorded so far."""

    def __init__(self, model: nn.Module, queries_keys: bool = True, dense_limit: int = DEFAULT_DENSE_LIMIT,
                 values: bool = False) -> None:
        self.model = model
        self.queries_keys = queries_keys
        self.values = values
        self.dense_limit = dense_limit
        self.forwards: list[CapturedForward] = []
        self._depth = 0  # nesting depth of grouping hooks
        self._names: dict[int, str] = {}  # id(module) -> qualified name
        self._modules: dict[str, nn.Module] = {}  # qualified name -> module (looked up for values=True)
        self._counters: dict[str, int] = {}

    @property
    def last(self) -> CapturedForward:
        """The latest forward (raises ``IndexError`` if none was recorded)."""
        if not self.forwards:
            raise IndexError("no forward pass recorded yet")
        return self.forwards[-1]

    def clear(self) -> None:
        """Drop all recorded forwards."""
        self.forwards.clear()
        self._counters = {}

    # -- internals
    def _start_forward(self, config: Any) -> CapturedForward:
        fwd = CapturedForward(model_name=_model_name(config), is_encoder_decoder=_is_enc_dec(config), config=config)
        self.forwards.append(fwd)
        self._counters = {}
        return fwd

    def _current(self) -> CapturedForward:
        # a layer call outside any hooked forward gets a forward of its own (started on first such call)
        if self._depth == 0 and (not self.forwards or self._counters.get("_closed")):
            self._start_forward(_find_config(self.model))
        return self.forwards[-1]

    def _add(self, kind: str, **fields: Any) -> None:
        fwd = self._current()
        index = self._counters.get(kind, 0)
        self._counters[kind] = index + 1
        if not fields.get("shape") and fields.get("attention") is not None:
            fields["shape"] = tuple(fields["attention"].shape)
        fwd.layers.setdefault(kind, []).append(LayerRecord(kind=kind, layer=index, **fields))


_GENERIC_DIRS = {"", ".", "model", "models", "snapshots", "checkpoints", "hf", "huggingface", "transformers"}


def _model_name(config: Any) -> str:
    """A short model name: the informative tail of ``config._name_or_path``, else ``model_type``."""
    if config is None:
        return ""
    parts = re.split(r"[/\\]+", str(getattr(config, "_name_or_path", "") or ""))
    for part in reversed(parts):
        if part.startswith("models--"):  # hub cache folder models--org--name
            return part.rsplit("--", 1)[-1]
        if part.lower() not in _GENERIC_DIRS and not re.fullmatch(r"[0-9a-f]{40}", part):  # snapshot hash
            return part
    return str(getattr(config, "model_type", "") or "")


def _is_enc_dec(config: Any) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def _find_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is not None:
        return config
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            return module.config
    return None


# ------------------------------------------------------------------------- the registered attention function

# id(module) -> captures recording it (a list: captures of the same model may be nested)
_ACTIVE: dict[int, list[AttentionCapture]] = {}
# id(module) -> was its current forward call a cross-attention call (seen by a pre-hook)
_CROSS_CALLS: dict[int, bool] = {}
_EAGER_CACHE: dict[type, Callable] = {}


def _eager_for(module: nn.Module) -> Callable:
    """The eager attention function of the module's own modeling file (along the MRO)."""
    cls = type(module)
    fn = _EAGER_CACHE.get(cls)
    if fn is not None:
        return fn
    for klass in cls.__mro__:
        py_module = sys.modules.get(klass.__module__)
        if py_module is None:
            continue
        fn = getattr(py_module, "eager_attention_forward", None)
        if not callable(fn):  # e.g. timesfm's simple_eager_attention_forward
            fn = next(
                (v for k, v in vars(py_module).items() if k.endswith("eager_attention_forward") and callable(v)), None
            )
        if callable(fn):
            _EAGER_CACHE[cls] = fn
            return fn
    raise RuntimeError(
        f"capture_attention: no eager_attention_forward found in the module of {cls.__qualname__} "
        f"({cls.__module__}); cannot record its attention."
    )


def _in_backward() -> bool:
    # gradient-checkpointing recomputation runs attention again during backward: not a new forward
    task_id = getattr(torch._C, "_current_graph_task_id", None)
    return task_id is not None and task_id() != -1


def _capture_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *args: Any,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Registered under ``_IMPL_NAME``: run the module's eager attention and record its probabilities."""
    eager = _eager_for(module)
    captures = _ACTIVE.get(id(module))
    if not captures or _in_backward():
        return eager(module, query, key, value, attention_mask, *args, **kwargs)
    _refuse_sharded_sequence(module, query, key)

    dropout = kwargs.get("dropout", args[1] if len(args) > 1 else 0.0)
    q_len, k_len = query.shape[2], key.shape[2]
    limit = min(c.dense_limit for c in captures)
    if q_len > 1 and q_len * k_len > limit * limit and not _bias_kwargs(kwargs):
        return _capture_long(module, query, key, value, captures, args, kwargs)
    if module.training and dropout:
        # record pre-dropout probabilities, then compute the output exactly as asked
        if "dropout" in kwargs or len(args) < 2:
            _, probs = eager(module, query, key, value, attention_mask, *args, **{**kwargs, "dropout": 0.0})
        else:
            _, probs = eager(module, query, key, value, attention_mask, args[0], 0.0, *args[2:], **kwargs)
        out = eager(module, query, key, value, attention_mask, *args, **kwargs)
    else:
        out = eager(module, query, key, value, attention_mask, *args, **kwargs)
        probs = out[1]
    if probs is None:
        return out

    scaling = kwargs.get("scaling", args[0] if args else None)
    scaling = float(query.shape[-1] ** -0.5 if scaling is None else scaling)
    cross = _is_cross(module, captures[0]._names.get(id(module), ""))
    causal = not cross and _module_causal(module)
    kind = "cross" if cross else ("decoder" if causal else "encoder")
    fields = dict(
        scaling=scaling,
        causal=causal,
        position_bias=_has_position_bias(module, attention_mask, kwargs),
        softcap=_opt_float(kwargs.get("softcap")),
        sliding_window=_opt_int(kwargs.get("sliding_window", getattr(module, "sliding_window", None))),
    )
    attention = probs.detach().float().cpu()
    queries = keys = None
    if any(c.queries_keys for c in captures):
        queries = query.detach().float().cpu()
        keys = _expand_kv(key.detach(), query.shape[1]).float().cpu()
    norms = _value_norms(module, value, query.shape[1], captures) if any(c.values for c in captures) else None
    for cap in captures:
        name = cap._names.get(id(module), "")
        cap._add(
            kind,
            attention=attention,
            queries=queries if cap.queries_keys else None,
            keys=keys if cap.queries_keys else None,
            value_norms=norms if cap.values else None,
            module_name=name,
            **fields,
            **_placement(module, name, query.shape[1]),
        )
    return out


def _bias_kwargs(kwargs: dict) -> bool:
    return any(isinstance(kwargs.get(name), torch.Tensor) for name in _BIAS_KWARGS)


def _kept_range(mask: np.ndarray | None, n: int) -> tuple[int, int]:
    """The kept positions of a sequence of ``n`` as one range (padding is at one end)."""
    kept = np.flatnonzero(_align(mask, n))
    if kept.size == 0:
        return 0, 0
    if kept[-1] - kept[0] + 1 != kept.size:
        raise ValueError("capture_attention: long layers need padding at one end of each sequence (the attention "
                         "mask keeps a non-contiguous set of positions)")
    return int(kept[0]), int(kept[-1]) + 1


def _capture_long(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  captures: list, args: tuple, kwargs: dict) -> tuple[torch.Tensor, None]:
    """A layer above the dense limit: no probabilities are kept. For each example its rows are computed in
    chunks (``long_layers.summarize``), giving the layer output and the record's summaries; only those and
    q/k leave the device. The mask is the layer's own (causal / sliding window) on the unpadded positions."""
    from . import long_layers

    scaling = kwargs.get("scaling", args[0] if args else None)
    scaling = float(query.shape[-1] ** -0.5 if scaling is None else scaling)
    cross = _is_cross(module, captures[0]._names.get(id(module), ""))
    causal = not cross and _module_causal(module)
    kind = "cross" if cross else ("decoder" if causal else "encoder")
    softcap = _opt_float(kwargs.get("softcap"))
    window = _opt_int(kwargs.get("sliding_window", getattr(module, "sliding_window", None)))
    if module.training and kwargs.get("dropout", args[1] if len(args) > 1 else 0.0) and not _WARNED.get("dropout"):
        _WARNED["dropout"] = True
        warnings.warn("capture_attention: attention dropout is not applied in long layers while capturing "
                      "(run probes in eval mode)", stacklevel=3)
    fwd = captures[0]._current()
    batch, heads, n, _ = query.shape
    m = key.shape[2]
    keep_qk = any(c.queries_keys for c in captures)
    norms = _value_norms(module, value, heads, captures) if any(c.values for c in captures) else None
    out = torch.zeros(batch, n, heads, value.shape[-1], dtype=value.dtype, device=value.device)
    longs = []
    for b in range(batch):
        q_mask, k_mask = fwd._kind_masks(b).get(kind, (None, None))
        q0, q1 = _kept_range(q_mask, n)
        k0, k1 = _kept_range(k_mask, m)
        ids = fwd._token_ids(kind, b, n)
        layer, rows = long_layers.summarize(
            query[b, :, q0:q1], key[b, :, k0:k1], value[b, :, k0:k1], scaling=scaling, causal=causal,
            sliding_window=window, softcap=softcap, token_ids=None if ids is None or q1 - q0 != k1 - k0 else ids[q0:q1],
            keep_qk=keep_qk, info={"position_bias": False, "module_name": ""})
        out[b, q0:q1] = rows.transpose(0, 1)
        if norms is not None:
            layer.value_norms = np.ascontiguousarray(norms[b, :, k0:k1].numpy())
        longs.append(layer)
    for cap in captures:
        mine = longs if cap.queries_keys or not keep_qk else [
            fmt.LongLayer(**{**l.__dict__, "queries": None, "keys": None}) for l in longs]
        name = cap._names.get(id(module), "")
        mine = [fmt.LongLayer(**{**l.__dict__, "info": dict(l.info, module_name=name),
                                 **({} if cap.values else {"value_norms": None})}) for l in mine]
        cap._add(kind, attention=None, queries=None, keys=None, module_name=name, scaling=scaling, causal=causal,
                 position_bias=False, softcap=softcap, sliding_window=window, long=mine,
                 shape=(batch, heads, n, m), **_placement(module, name, heads))
    return out, None


# ------------------------------------------------------------------ value norms (values=True)
# Kobayashi et al. 2020: the output of head h is sum_j a_ij f_h(x_j) with f_h(x_j) = v_j W_O^h (W_O^h: the rows of
# the output projection that read head h), so ||f_h(x_j)|| says how much key j can contribute at all.
_OUTPUT_PROJECTIONS = ("o_proj", "out_proj", "c_proj", "out_lin", "o", "output.dense", "dense", "proj")


def _output_projection(module: nn.Module, captures: list) -> nn.Module:
    """The linear layer that maps the heads' outputs of ``module`` back to the model width: an attribute of the
    module (``o_proj``, ``out_proj``, GPT-2's ``c_proj``, T5's ``o``, ...) or of its parent (BERT / ViT keep
    it in ``attention.output.dense``)."""
    cap = captures[0]
    name = cap._names.get(id(module), "")
    modules = cap._modules if cap._modules else dict(cap.model.named_modules())
    cap._modules = modules
    parent = modules.get(name.rsplit(".", 1)[0] if "." in name else "")
    for owner in (module, parent):
        for path in _OUTPUT_PROJECTIONS:
            found: Any = owner
            for part in path.split("."):
                found = getattr(found, part, None) if isinstance(found, nn.Module) else None
            if isinstance(found, nn.Module) and found is not module and getattr(found, "weight", None) is not None:
                return found
    raise TypeError(f"capture_attention(values=True): cannot find the output projection of {name or type(module).__name__} "
                    f"(looked for {', '.join(_OUTPUT_PROJECTIONS)} on the module and its parent); capture without "
                    "values=True, or log value_norms yourself (LayerArrays.value_norms)")


def _local(weight: torch.Tensor) -> torch.Tensor:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without DTensor
        return weight
    return weight.to_local() if isinstance(weight, DTensor) else weight


@torch.no_grad()
def _value_norms(module: nn.Module, value: torch.Tensor, heads: int, captures: list) -> torch.Tensor:
    """``||v_j W_O^h||`` of every example, head and key: ``(batch, heads, k_len)`` float32 on the CPU.

    Computed through each head's d x d Gram matrix ``W_O^h (W_O^h)^T``: O(k d^2) per head, never (k x width).
    Grouped-query values are expanded to the query heads. Under tensor parallelism the projection's local
    slice (rowwise: the input features of this rank's heads) is used.
    """
    proj = _output_projection(module, captures)
    weight = _local(proj.weight).detach()
    if type(proj).__name__ == "Conv1D":  # GPT-2: weight is (in, out)
        weight = weight.t()
    d = value.shape[-1]
    v = _expand_kv(value.detach(), heads).float()
    if weight.shape[1] == heads * d:
        w = weight
    else:
        total = _total_heads(module)
        offset = _placement(module, captures[0]._names.get(id(module), ""), heads)["head_offset"]
        if total is None or weight.shape[1] != total * d:
            raise TypeError(f"capture_attention(values=True): the output projection of {type(module).__name__} reads "
                            f"{weight.shape[1]} features, not heads x head_dim = {heads} x {d}")
        w = weight[:, offset * d:(offset + heads) * d]
    w = w.to(device=v.device, dtype=torch.float32).reshape(w.shape[0], heads, d)
    gram = torch.einsum("ohd,ohe->hde", w, w)  # (heads, d, d)
    squared = torch.einsum("bhkd,hde,bhke->bhk", v, gram, v)
    return squared.clamp_min_(0).sqrt_().cpu()


# ------------------------------------------------------------------ placement in a distributed model

_LAYER_NUMBER = re.compile(r"(?:^|\.)(\d+)(?=\.|$)")  # the first numbered part of a name: model.layers.3.attn
_HEAD_COUNT_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head")


def _placement(module: nn.Module, name: str, local_heads: int) -> dict[str, Any]:
    """``layer_id``, ``head_offset`` and ``total_heads`` of one layer call (see ``LayerRecord``).

    A layer sharded by tensor parallelism computes fewer heads than it has: the heads' ids then come from the
    DTensor placement of its projection weights (transformers' ``tp_plan``, torch's ``parallelize_module``),
    or, for plain tensors sharded by hand, from the rank in the world (checked when the record is assembled).
    """
    layer_id = getattr(module, "layer_idx", None)
    if not isinstance(layer_id, int) or isinstance(layer_id, bool):
        numbers = _LAYER_NUMBER.findall(name)
        layer_id = int(numbers[0]) if numbers else None
    total = _total_heads(module)
    if total is None or local_heads >= total:
        return {"layer_id": layer_id, "head_offset": 0, "total_heads": None}
    shard = _sharded_rank(module)
    if shard is None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return {"layer_id": layer_id, "head_offset": 0, "total_heads": None}  # pruned heads, one process
        shard = dist.get_rank()
    return {"layer_id": layer_id, "head_offset": shard * local_heads, "total_heads": total}


def _total_heads(module: nn.Module) -> int | None:
    """The layer's head count as the model defines it (module attribute, else its config)."""
    for source in (module, getattr(module, "config", None)):
        for attr in _HEAD_COUNT_ATTRS:
            value = getattr(source, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _sharded_rank(module: nn.Module) -> int | None:
    """This process's index along the mesh dimension that shards the module's output features (Shard(0) of a
    projection weight), or None when no weight of the module is a sharded DTensor."""
    try:
        from torch.distributed.tensor import DTensor, Shard
    except ImportError:  # pragma: no cover - torch without DTensor
        return None
    for param in module.parameters():
        if isinstance(param, DTensor):
            for dim, placement in enumerate(param.placements):
                if isinstance(placement, Shard) and placement.dim == 0:
                    return int(param.device_mesh.get_local_rank(dim))
    return None


class UnsupportedParallelismError(RuntimeError):
    """The model is split across processes in a way the capture cannot assemble into a whole record."""


def _refuse_sharded_sequence(module: nn.Module, query: torch.Tensor, key: torch.Tensor) -> None:
    """Refuse context / sequence parallelism: each rank would record its slice of the sequence only."""
    try:
        from torch.distributed.tensor import DTensor, Shard
    except ImportError:  # pragma: no cover
        return
    for t in (query, key):
        if isinstance(t, DTensor) and any(isinstance(p, Shard) and p.dim == 2 for p in t.placements):
            raise UnsupportedParallelismError(
                "capture_attention: the attention inputs are sharded along the sequence (context / sequence "
                "parallelism); capturing them is not supported: run the probes without context parallelism.")
    if _context_parallel_active():
        raise UnsupportedParallelismError(
            "capture_attention: torch's context parallelism (torch.distributed.tensor.experimental."
            "context_parallel) is active, so each rank holds a slice of the sequence; capturing attention under "
            "context parallelism is not supported: run the probes outside the context_parallel block.")


def _context_parallel_active() -> bool:
    """Whether torch's context parallelism has replaced scaled_dot_product_attention (its private state, read
    defensively: a torch without it has no context parallelism to detect)."""
    cp = sys.modules.get("torch.distributed.tensor.experimental._context_parallel._attention")
    if cp is None:
        return False
    replaced = getattr(cp, "_replaced_functions", {}) or {}
    return torch.nn.functional.scaled_dot_product_attention in replaced


_WARNED: dict = {}


def _expand_kv(key: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Grouped-query keys (batch, kv_heads, len, d) -> (batch, heads, len, d), as ``repeat_kv`` does."""
    kv_heads = key.shape[1]
    if kv_heads == num_heads:
        return key
    if num_heads % kv_heads:
        raise ValueError(f"{num_heads} query heads are not a multiple of {kv_heads} key/value heads")
    return key.repeat_interleave(num_heads // kv_heads, dim=1)


def _is_cross(module: nn.Module, name: str) -> bool:
    if _CROSS_CALLS.get(id(module)):
        return True
    flag = getattr(module, "is_cross_attention", None)
    if isinstance(flag, bool):
        return flag
    if "crossattention" in type(module).__name__.lower():
        return True
    return bool(_CROSS_NAME.search(name.rsplit(".", 1)[-1]))


def _module_causal(module: nn.Module) -> bool:
    config = getattr(module, "config", None)
    if config is not None and getattr(config, "is_causal", True) is False:
        return False  # transformers' "bidirectional decoder" switch
    return bool(getattr(module, "is_causal", False))


def _has_position_bias(module: nn.Module, mask: Any, kwargs: dict[str, Any]) -> bool:
    if getattr(module, "has_relative_attention_bias", False) is True:
        return True
    for name in _BIAS_KWARGS:
        bias = kwargs.get(name)
        if isinstance(bias, torch.Tensor) and bool((bias != 0).any()):
            return True
    return _mask_has_bias(mask)


def _mask_has_bias(mask: Any) -> bool:
    """A float mask with finite values other than 0 and the 'masked' value carries an additive bias."""
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point():
        return False
    floor = torch.finfo(mask.dtype).min / 2
    return bool(((mask != 0) & (mask > floor)).any())


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _opt_int(x: Any) -> int | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


AttentionInterface.register(_IMPL_NAME, _capture_attention_forward)
def _capture_mask(batch_size: int, q_length: int, kv_length: int, *args: Any, **kwargs: Any) -> torch.Tensor | None:
    """Masks for the capture: eager's float masks, except above the dense limit where none is built (a long
    layer masks by its own causal / sliding-window facts, and a dense mask would be n x n)."""
    if _MASK_LIMITS and q_length > 1 and q_length * kv_length > min(_MASK_LIMITS) ** 2:
        return None
    return eager_mask(batch_size, q_length, kv_length, *args, **kwargs)


_MASK_LIMITS: list[int] = []  # dense limits of the captures that are active (masks are built per forward)
AttentionMaskInterface.register(_IMPL_NAME, _capture_mask)


# ----------------------------------------------------------------------------------------------- hooks

_SIGNATURES: dict[Any, inspect.Signature | None] = {}


def _signature(module: nn.Module) -> inspect.Signature | None:
    forward = module.forward
    key = getattr(forward, "__func__", forward)
    if key not in _SIGNATURES:
        try:
            _SIGNATURES[key] = inspect.signature(forward)
        except (TypeError, ValueError):
            _SIGNATURES[key] = None
    return _SIGNATURES[key]


def _bind(module: nn.Module, args: tuple, kwargs: dict, flatten: bool = True) -> dict[str, Any]:
    """Arguments of a module call by parameter name (the keyword arguments only if binding fails).

    With ``flatten=False`` whatever lands in ``**kwargs`` stays under that parameter's name.
    """
    sig = _signature(module)
    if sig is None:
        return dict(kwargs)
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError:
        return dict(kwargs)
    out = dict(bound.arguments)
    for p in sig.parameters.values() if flatten else ():  # flatten **kwargs
        if p.kind is inspect.Parameter.VAR_KEYWORD and isinstance(out.get(p.name), dict):
            out.update(out.pop(p.name))
    return out


def _mask_copy(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor) and x.dim() == 2:
        return x.detach().to("cpu", copy=True)
    return None


def _install_grouping(cap: AttentionCapture, model: nn.Module, targets: list[PreTrainedModel]) -> list[Any]:
    """Pre/post hooks on the model and its sub-models that group layer calls per top-level forward."""
    handles = []
    target_ids = {id(t) for t in targets}
    starter: dict[str, Any] = {}

    def pre(module: nn.Module, args: tuple, kwargs: dict) -> None:
        cap._depth += 1
        if cap._depth == 1:
            config = getattr(module, "config", None)
            fwd = cap._start_forward(config if config is not None else _find_config(model))
            starter["hf"] = isinstance(module, PreTrainedModel)
        elif id(module) in target_ids and not starter.get("hf"):
            # the forward started in a wrapper (not a PreTrainedModel): the first model inside has the masks
            fwd = cap.forwards[-1]
            fwd.model_name, fwd.is_encoder_decoder = _model_name(module.config), _is_enc_dec(module.config)
            fwd.config = module.config
            starter["hf"] = True
        else:
            return  # nested sub-model call: same forward, masks come from the top level only
        bound = _bind(module, args, kwargs)
        if fwd.attention_mask is None:
            fwd.attention_mask = _mask_copy(bound.get("attention_mask"))
        if fwd.decoder_attention_mask is None:
            fwd.decoder_attention_mask = _mask_copy(bound.get("decoder_attention_mask"))
        if fwd.input_ids is None:
            fwd.input_ids = _mask_copy(bound.get("input_ids"))
        if fwd.decoder_input_ids is None:
            fwd.decoder_input_ids = _mask_copy(bound.get("decoder_input_ids"))
        pixels = bound.get("pixel_values")
        if fwd.pixel_shape is None and isinstance(pixels, torch.Tensor):
            fwd.pixel_shape = tuple(pixels.shape)

    def post(module: nn.Module, args: tuple, output: Any) -> None:
        cap._depth = max(0, cap._depth - 1)
        if cap._depth == 0:
            cap._counters = {"_closed": 1}
            raising = sys.exc_info()[1] is not None  # always_call hooks also run when forward raised
            if cap.forwards and not cap.forwards[-1].layers and not raising and not starter.get("warned"):
                starter["warned"] = True
                warnings.warn(
                    f"capture_attention: a forward of {type(module).__name__} recorded no attention layer "
                    "(its attention does not go through transformers' AttentionInterface?)",
                    stacklevel=2,
                )

    modules = [model] + [m for m in model.modules() if isinstance(m, PreTrainedModel) and m is not model]
    for m in modules:
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(_register_post(m, post))
    return handles


def _register_post(module: nn.Module, hook: Callable) -> Any:
    try:
        return module.register_forward_hook(hook, always_call=True)  # runs even if forward raises
    except TypeError:  # torch < 2.1
        return module.register_forward_hook(hook)


def _install_cross_detection(model: nn.Module) -> list[Any]:
    """Pre-hooks on attention-like modules noting whether a call passes encoder states (cross-attention)."""

    def pre(module: nn.Module, args: tuple, kwargs: dict) -> None:
        # explicit parameters only: a self-attention module may pass encoder states along in **kwargs
        bound = _bind(module, args, kwargs, flatten=False)
        _CROSS_CALLS[id(module)] = any(bound.get(k) is not None for k in _CROSS_KWARGS)

    return [
        m.register_forward_pre_hook(pre, with_kwargs=True)
        for m in model.modules()
        if "attention" in type(m).__name__.lower() and not isinstance(m, nn.MultiheadAttention)
    ]


# ------------------------------------------------------------------------------ nn.MultiheadAttention


def _install_mha(cap: AttentionCapture, mha_modules: list[nn.MultiheadAttention]) -> list[Any]:
    stacks: dict[int, list[dict[str, Any]]] = {}

    def pre(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        bound = _bind(module, args, kwargs)
        stacks.setdefault(id(module), []).append(
            {
                "need_weights": bound.get("need_weights", True),
                "average": bound.get("average_attn_weights", True),
                "query": bound.get("query"),
                "key": bound.get("key"),
                "value": bound.get("value"),
                "attn_mask": bound.get("attn_mask"),
                "is_causal": bool(bound.get("is_causal", False)),
            }
        )
        bound["need_weights"] = True
        bound["average_attn_weights"] = False
        return (), bound

    def post(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> Any:
        stack = stacks.get(id(module))
        if not stack:
            return None
        call = stack.pop()
        if not isinstance(output, tuple) or len(output) != 2 or output[1] is None:
            return None
        attn_out, weights = output
        if not _in_backward():
            _record_mha(cap, module, call, weights)
        # give the caller what it asked for
        if not call["need_weights"]:
            return attn_out, None
        if call["average"]:
            return attn_out, weights.mean(dim=-3)
        return output

    handles = []
    for m in mha_modules:
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        try:
            handles.append(m.register_forward_hook(post, with_kwargs=True, always_call=True))
        except TypeError:
            handles.append(m.register_forward_hook(post, with_kwargs=True))
    return handles


def _record_mha(cap: AttentionCapture, module: nn.MultiheadAttention, call: dict, weights: torch.Tensor) -> None:
    query, key = call["query"], call["key"]
    unbatched = weights.dim() == 3
    attention = (weights.unsqueeze(0) if unbatched else weights).detach().float().cpu()
    cross = not (query is key or (query.shape == key.shape and query.data_ptr() == key.data_ptr()))
    causal = not cross and (call["is_causal"] or _mask_is_causal(call["attn_mask"]))
    head_dim = module.embed_dim // module.num_heads
    queries = keys = None
    if cap.queries_keys:
        queries, keys = _mha_qk(module, query, key, unbatched)
    cap._add(
        "cross" if cross else ("decoder" if causal else "encoder"),
        attention=attention,
        queries=queries,
        keys=keys,
        value_norms=_mha_value_norms(module, call["value"], unbatched) if cap.values else None,
        scaling=float(head_dim**-0.5),
        causal=causal,
        position_bias=_mask_has_bias(call["attn_mask"]),
        softcap=None,
        sliding_window=None,
        module_name=cap._names.get(id(module), ""),
    )


@torch.no_grad()
def _mha_qk(
    module: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, unbatched: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries/keys as ``F.multi_head_attention_forward`` computes them, (batch, heads, len, head_dim)."""
    e, h = module.embed_dim, module.num_heads
    if unbatched:
        query, key = query.unsqueeze(1), key.unsqueeze(1)  # (len, 1, E)
    elif module.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)  # (len, batch, E)
    if module._qkv_same_embed_dim:
        w_q, w_k = module.in_proj_weight[:e], module.in_proj_weight[e : 2 * e]
    else:
        w_q, w_k = module.q_proj_weight, module.k_proj_weight
    b = module.in_proj_bias
    b_q, b_k = (None, None) if b is None else (b[:e], b[e : 2 * e])
    q = nn.functional.linear(query, w_q, b_q)
    k = nn.functional.linear(key, w_k, b_k)
    batch = q.shape[1]
    if module.bias_k is not None:
        k = torch.cat([k, module.bias_k.repeat(1, batch, 1)])
    if module.add_zero_attn:
        k = torch.cat([k, k.new_zeros((1,) + k.shape[1:])])
    q = q.reshape(q.shape[0], batch, h, e // h).permute(1, 2, 0, 3)
    k = k.reshape(k.shape[0], batch, h, e // h).permute(1, 2, 0, 3)
    return q.float().cpu(), k.float().cpu()


@torch.no_grad()
def _mha_value_norms(module: nn.MultiheadAttention, value: torch.Tensor, unbatched: bool) -> torch.Tensor:
    """``||v_j W_O^h||`` of an ``nn.MultiheadAttention`` call, ``(batch, heads, k_len)`` (see ``_value_norms``)."""
    e, h = module.embed_dim, module.num_heads
    if unbatched:
        value = value.unsqueeze(1)
    elif module.batch_first:
        value = value.transpose(0, 1)  # (len, batch, E)
    w_v = module.in_proj_weight[2 * e:] if module._qkv_same_embed_dim else module.v_proj_weight
    b = module.in_proj_bias
    v = nn.functional.linear(value, w_v, None if b is None else b[2 * e:])
    batch = v.shape[1]
    if module.bias_v is not None:
        v = torch.cat([v, module.bias_v.repeat(1, batch, 1)])
    if module.add_zero_attn:
        v = torch.cat([v, v.new_zeros((1,) + v.shape[1:])])
    v = v.reshape(v.shape[0], batch, h, e // h).permute(1, 2, 0, 3).float()  # (batch, heads, len, d)
    w = module.out_proj.weight.float().reshape(e, h, e // h)
    gram = torch.einsum("ohd,ohe->hde", w, w)
    return torch.einsum("bhkd,hde,bhke->bhk", v, gram, v).clamp_min_(0).sqrt_().cpu()


def _mask_is_causal(mask: Any) -> bool:
    """True when the strict upper triangle of a square (…, L, L) attention mask is entirely masked."""
    if not isinstance(mask, torch.Tensor) or mask.dim() < 2 or mask.shape[-1] != mask.shape[-2] or mask.shape[-1] < 2:
        return False
    masked = mask if mask.dtype == torch.bool else mask < torch.finfo(mask.dtype).min / 2
    upper = torch.ones(mask.shape[-2:], dtype=torch.bool, device=mask.device).triu(1)
    return bool(masked[..., upper].all())


# ------------------------------------------------------------------------------------- context manager


def _attention_configs(model: nn.Module) -> list[Any]:
    """Every config object reachable from the model (sub-models' own copies and sub-configs, recursively)."""
    seen: dict[int, Any] = {}
    stack = [m.config for m in model.modules() if getattr(m, "config", None) is not None]
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen or not hasattr(cfg, "_attn_implementation_internal"):
            continue
        seen[id(cfg)] = cfg
        for key in getattr(cfg, "sub_configs", {}) or {}:
            sub = getattr(cfg, key, None)
            if sub is not None:
                stack.append(sub)
    return list(seen.values())


def _top_pretrained(model: nn.Module) -> list[PreTrainedModel]:
    """The outermost ``PreTrainedModel`` modules (the model itself if it is one)."""
    if isinstance(model, PreTrainedModel):
        return [model]
    tops: dict[str, PreTrainedModel] = {}
    for name, m in model.named_modules():
        if isinstance(m, PreTrainedModel) and not any(name.startswith(p + ".") for p in tops):
            tops[name] = m
    return list(tops.values())


@contextlib.contextmanager
def capture_attention(model: nn.Module, *, queries_keys: bool = True,
                      dense_limit: int = DEFAULT_DENSE_LIMIT, values: bool = False) -> Iterator[AttentionCapture]:
    """Record attention (and queries/keys) of every forward pass of ``model`` inside the ``with`` block.

    Args:
        model: a transformers ``PreTrainedModel`` (any architecture whose attention goes through
            ``AttentionInterface``), a module containing one, and/or a module using ``nn.MultiheadAttention``.
        queries_keys: also record queries and keys (as the model uses them, after rotary embedding).
        dense_limit: layers whose attention has more than ``dense_limit ** 2`` weights (default 1024 tokens
            square) keep no probabilities: they are computed in chunks of rows on the model's device, giving
            the layer output and a long-layer record (q/k, each row's log-sum-exp, a pooled pyramid, per-row
            top-k, metrics; ``format.LongLayer``), from which any window is rebuilt exactly when read. Below it,
            the probabilities are recorded as they are.
        values: also record, per head and key, the norm of the key's transformed value ``||v_j W_O^h||``
            (Kobayashi et al. 2020; O(k) per head, format v5), from which any stored or rebuilt attention can be
            shown value-weighted (``metrics.value_weighted``, the tab's "value-weighted" toggle,
            ``read_attention(weighting="value")``). The output projection is found by name on the attention
            module or its parent (``o_proj``, ``out_proj``, ``c_proj``, ``output.dense``, ...).

    Yields:
        An ``AttentionCapture`` whose ``forwards`` fill up as the model runs.

    The model's attention implementation is switched to the model's eager attention for the duration and
    restored on exit, also when the block raises.
    """
    if isinstance(dense_limit, bool) or not isinstance(dense_limit, int) or dense_limit < 1:
        raise ValueError(f"dense_limit must be a positive number of tokens, got {dense_limit!r}")
    if not isinstance(values, bool):
        raise ValueError(f"values must be True or False, got {values!r}")
    cap = AttentionCapture(model, queries_keys=queries_keys, dense_limit=dense_limit, values=values)
    cap._names = {id(m): name for name, m in model.named_modules()}
    targets = _top_pretrained(model)
    mha = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    if not targets and not mha:
        raise TypeError(
            f"capture_attention: {type(model).__name__} has neither a transformers PreTrainedModel nor an "
            "nn.MultiheadAttention inside; its attention cannot be captured."
        )

    configs = _attention_configs(model)
    saved = [(cfg, cfg._attn_implementation_internal) for cfg in configs]
    handles: list[Any] = []
    module_ids = [id(m) for m in model.modules()]
    fastpath = getattr(torch.backends, "mha", None)
    saved_fastpath = fastpath.get_fastpath_enabled() if fastpath is not None and mha else None
    try:
        for t in targets:
            if t.config._attn_implementation != _IMPL_NAME:
                t.set_attn_implementation(_IMPL_NAME)  # only logs a warning when the model cannot switch
        # transformers < 5.2x did not reach sub-models with their own config copy (T5's stacks): switch them too
        for m in model.modules():
            if (
                isinstance(m, PreTrainedModel)
                and m.config._attn_implementation != _IMPL_NAME
                and type(m)._can_set_attn_implementation()
            ):
                m.set_attn_implementation(_IMPL_NAME)
        stuck = [t for t in targets if t.config._attn_implementation != _IMPL_NAME]
        if stuck and not mha and len(stuck) == len(targets):
            raise TypeError(
                f"capture_attention: {type(stuck[0]).__name__} does not route its attention through transformers' "
                "AttentionInterface (set_attn_implementation refused), so its attention cannot be captured."
            )
        if stuck:
            warnings.warn(
                "capture_attention: not capturing " + ", ".join(type(t).__name__ for t in stuck) + ": its attention "
                "does not go through transformers' AttentionInterface.",
                stacklevel=3,
            )
        for mid in module_ids:
            _ACTIVE.setdefault(mid, []).append(cap)
        _MASK_LIMITS.append(dense_limit)
        if mha:  # before the grouping hooks: a model that *is* an MHA records before its forward closes
            handles += _install_mha(cap, mha)
            if saved_fastpath is not None:
                fastpath.set_fastpath_enabled(False)
        handles += _install_grouping(cap, model, targets)
        handles += _install_cross_detection(model)
        yield cap
    finally:
        if dense_limit in _MASK_LIMITS and any(cap in a for a in _ACTIVE.values()):
            _MASK_LIMITS.remove(dense_limit)
        for h in handles:
            h.remove()
        for mid in module_ids:
            active = _ACTIVE.get(mid)
            if active and cap in active:
                active.remove(cap)
            if not active:
                _ACTIVE.pop(mid, None)
                _CROSS_CALLS.pop(mid, None)
        for cfg, impl in saved:
            cfg._attn_implementation_internal = impl
        if saved_fastpath is not None:
            fastpath.set_fastpath_enabled(saved_fastpath)
