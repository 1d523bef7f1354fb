"""Checks of the writer's input values (names, steps, tokens, arrays), numpy only: each raises ``ValueError``
saying what is wrong and how to fix it. Shapes and values of whole layers are checked by their layout
(``layouts``); what is an example by ``inputs``.
"""

from __future__ import annotations

import math
import operator
import re
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import format as fmt

MAX_TOKENS = 8192  # per sequence of a dense layer; longer attention is stored as long layers (format v3)
MAX_LONG_TOKENS = fmt.MAX_COUNTS["q_len"]  # per sequence of a long layer
MAX_VALUES = 2**31 - 1  # attention values per example and kind
ROW_SUM_TOLERANCE = 0.01
MAX_STEP = 2**63 - 1  # Event.step is an int64
_TAG_RE = re.compile(r"^[^\x00-\x1f]+$")
_SPECIAL_RE = re.compile(r"^(\[[A-Z]+\]|<\|?[A-Za-z_]+\|?>|</?s>|<unk>|<pad>|<mask>)$")


def to_numpy(x: Any, what: str) -> np.ndarray:
    """A float32 numpy copy of an array or tensor (torch recognised without importing it)."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch
        if getattr(x, "is_meta", False):
            raise ValueError(f"{what} is a tensor on the meta device: it has a shape but no values (was the "
                             "model loaded with device_map='meta' / init_empty_weights?)")
        try:
            x = x.detach().float().cpu().numpy()
        except (RuntimeError, TypeError, NotImplementedError) as e:
            raise ValueError(f"{what} cannot be converted to numpy ({type(x).__name__}): {e}") from None
    try:  # a copy: the caller may reuse its buffers while the background thread encodes
        return np.array(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be a numeric array or tensor, got {type(x).__name__}: {e}") from None


def qk_array(x: Any, what: str) -> Any:
    """Queries or keys for a long layer, in their own 16-bit type when they have one (stored as they are: a
    float32 copy would be rounded back or stored twice as large); other inputs as float32 numpy."""
    dtype = str(getattr(x, "dtype", ""))
    if hasattr(x, "detach") and dtype in ("torch.float16", "torch.bfloat16") and not getattr(x, "is_meta", False):
        return x.detach().cpu().clone()
    if isinstance(x, np.ndarray) and x.dtype == np.float16:
        return np.array(x)
    return to_numpy(x, what)


def check_layer_info(info: Mapping) -> dict:
    """The per-layer facts kept in a record header (scaling, causal, ...), as JSON values."""
    keep = ("scaling", "causal", "position_bias", "softcap", "sliding_window", "module_name")
    out = {}
    for k in keep:
        v = info.get(k)
        if hasattr(v, "item") and not isinstance(v, str):  # numpy or torch scalar
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        if v is not None and not isinstance(v, (bool, int, float, str)):
            raise ValueError(f"layer info {k!r} must be a number, a string or None, got {type(v).__name__}")
        if isinstance(v, str):
            check_text(v, f"layer info {k!r}")
        out[k] = v
    return out


def all_finite(x: Any) -> bool:
    """Whether a numpy array or torch tensor holds no NaN or Inf."""
    return bool(x.isfinite().all()) if hasattr(x, "isfinite") else bool(np.isfinite(x).all())


def is_int(x: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def indices(chosen: Optional[Sequence[int]], count: int, what: str) -> Optional[list]:
    """Distinct indices in ``0..count-1`` (``layers=`` / ``heads=``), or None when not chosen."""
    if chosen is None:
        return None
    out = list(chosen)
    if not out or not all(is_int(i) and 0 <= i < count for i in out) or len(set(out)) != len(out):
        raise ValueError(f"{what}= must be distinct indices in 0..{count - 1}, got {chosen!r}")
    return [int(i) for i in out]


def token_list(tokens: Any, what: str) -> list[str]:
    """A non-empty list of token strings, at most ``MAX_LONG_TOKENS``."""
    if isinstance(tokens, str) or not isinstance(tokens, Sequence) and not hasattr(tokens, "__iter__"):
        raise ValueError(f"{what} must be a list of token strings (e.g. tokenizer.convert_ids_to_tokens(ids)), "
                         f"got {type(tokens).__name__}")
    out = list(tokens)
    if not all(isinstance(t, str) for t in out):
        bad = next(t for t in out if not isinstance(t, str))
        raise ValueError(f"{what} must be strings; got {type(bad).__name__} {bad!r} "
                         "(convert ids with tokenizer.convert_ids_to_tokens)")
    if not out:
        raise ValueError(f"{what} is empty")
    if len(out) > MAX_LONG_TOKENS:
        raise ValueError(f"{what} has {len(out)} tokens; at most {MAX_LONG_TOKENS} are supported per sequence")
    return out


def length_message(qseq: str, nq: int, kseq: str, nk: int) -> str:
    """How many tokens the sequences of a kind have, in words."""
    if qseq == kseq:
        return f"there are {nq} {qseq} tokens"
    return f"there are {nq} {qseq} tokens and {nk} {kseq} tokens"


def check_text(s: str, what: str) -> None:
    """Event files and the asset header hold UTF-8: a lone surrogate (e.g. from a bad decode) cannot be written."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} {s!r} is not valid Unicode (a lone surrogate at index {e.start}): it cannot be "
                         "written as UTF-8") from None


def check_names(tag: Any, example: Any, step: Any) -> None:
    """Tag, example name and step as TensorBoard and the format accept them."""
    if not isinstance(tag, str) or not tag or not _TAG_RE.match(tag):
        raise ValueError(f"tag must be a non-empty string without control characters, got {tag!r}")
    check_text(tag, "tag")
    if not isinstance(example, str) or not example or "/" in example or not _TAG_RE.match(example):
        raise ValueError(f"example must be a non-empty name without '/' or control characters, got {example!r}")
    check_text(example, "example")
    if not is_int(step) or not 0 <= step <= MAX_STEP:
        raise ValueError(f"step must be an integer in 0..2**63-1 (TensorBoard's int64 step), got {step!r}")


def check_wall_time(wall_time: Any) -> float:
    """Seconds since the epoch (now when None)."""
    if wall_time is None:
        return time.time()
    if isinstance(wall_time, (bool, np.bool_)) or not isinstance(wall_time, (int, float, np.integer, np.floating)):
        raise ValueError(f"wall_time must be seconds since the epoch (a number), got {wall_time!r}")
    if not math.isfinite(float(wall_time)):
        raise ValueError(f"wall_time must be finite, got {wall_time!r}")
    return float(wall_time)


def check_model_name(model_name: Any) -> Optional[str]:
    """A model name (a string) or None."""
    if model_name is None:
        return None
    if not isinstance(model_name, str):
        raise ValueError(f"model_name must be a string or None, got {type(model_name).__name__} {model_name!r}")
    check_text(model_name, "model_name")
    return str(model_name)


def check_special_tokens(special_tokens: Any, sequences: Mapping[str, list[str]]) -> dict[str, list[int]]:
    """``special_tokens`` checked against the sequences (or detected from the tokens when None)."""
    if special_tokens is None:
        return {name: [i for i, t in enumerate(seq) if _SPECIAL_RE.match(t)] for name, seq in sequences.items()}
    if not isinstance(special_tokens, Mapping):
        raise ValueError(f"special_tokens must map a sequence name ({', '.join(map(repr, sequences))}) to token "
                         f"indices, e.g. {{'input': [0, 5]}}; got {type(special_tokens).__name__}")
    out = {}
    for name, indices in special_tokens.items():
        if name not in sequences:
            raise ValueError(f"special_tokens: unknown sequence {name!r}; this example has "
                             f"{', '.join(map(repr, sequences))}")
        if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
            raise ValueError(f"special_tokens[{name!r}] must be a list of token indices, got {indices!r}")
        n = len(sequences[name])
        out[name] = []
        for i in indices:
            try:
                if isinstance(i, (bool, np.bool_)):
                    raise TypeError
                j = operator.index(i)  # ints, numpy and torch integer scalars; not floats
            except TypeError:
                raise ValueError(f"special_tokens[{name!r}] must hold integer indices, got {i!r}") from None
            if not 0 <= j < n:
                raise ValueError(f"special_tokens[{name!r}]: index {j} out of range for {n} {name} tokens")
            out[name].append(j)
    return out
