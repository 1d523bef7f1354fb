"""Training integrations: log attention of fixed probe texts while a model trains.

* ``trainer.AttentionCallback``: a ``transformers.TrainerCallback``.
* ``loop.AttentionLogger``: the same for a plain PyTorch training loop.
* ``probes``: what both share (tokenizing probes once, running them under ``capture_attention``, logging).
* ``backfill.backfill``: log saved checkpoints after the fact (``python -m tensorboard_plugin_attention backfill``).
* ``generation``: one causal matrix over prompt + generated tokens from a captured ``generate()``.

Nothing here is imported by ``import tensorboard_plugin_attention``; torch and transformers are imported by
the submodules that need them, when they are first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AttentionCallback": "trainer",
    "AttentionLogger": "loop",
    "ProbeRunner": "probes",
    "ImageProbeRunner": "probes",
    "Probe": "probes",
    "load_probes": "probes",
    "log_spaced_steps": "probes",
    "generation_attention": "generation",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
