"""tensorboard-plugin-attention: log attention and query/key tensors, view them in TensorBoard.

TensorBoard imports this package at start-up, so nothing heavy is imported here: each public name is
loaded on first use (PEP 562), and torch / transformers are imported only by capture and integrations.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "capture_attention": "capture",
    "AttentionWriter": "summary",
    "log_attention": "summary",
    "read_attention": "reader",
    "AttentionCallback": "integrations.trainer",
    "AttentionLogger": "integrations.loop",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # for type checkers and IDEs only
    from .capture import capture_attention
    from .integrations.loop import AttentionLogger
    from .integrations.trainer import AttentionCallback
    from .reader import read_attention
    from .summary import AttentionWriter, log_attention


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
