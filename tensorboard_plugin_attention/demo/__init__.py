"""The demo runs: ``python -m tensorboard_plugin_attention demo --logdir runs/demo``.

Each run is a function ``run(run_dir, *, quick=False, seed=0) -> summary dict`` registered in ``RUNS`` and
writes one TensorBoard run, ``<logdir>/<name>``:

* ``minilm``: all-MiniLM-L6-v2 fine-tuned on a built-in paraphrase task (sentence pairs) with the Trainer.
* ``induction``: a 2-layer causal transformer trained from scratch on repeated random segments, until an
  induction head forms (the "Heads over training" view shows when).
* ``vit``: a small ViT trained from scratch on generated images (find the bright square), its probe images'
  attention logged with the images (the image view shows [CLS] moving onto the square).

``--quick`` runs a few steps only (for tests).
"""

from __future__ import annotations

import importlib
import os
import shutil
from typing import Callable, Optional, Sequence

# run name -> "module:function" (imported only when the run is chosen)
RUNS: dict[str, str] = {
    "minilm": "minilm:run",
    "induction": "induction:run",
    "vit": "vit:run",
}


def get_run(name: str) -> Callable[..., dict]:
    module, func = RUNS[name].split(":")
    return getattr(importlib.import_module(f".{module}", __name__), func)


def _fresh_run_dir(path: str) -> None:
    """Empty a previous demo run in ``path`` (event files and plugin data only), so re-running the demo does
    not stack a second session onto the same steps. Anything else in it is left alone, with an error."""
    if not os.path.isdir(path):
        return
    entries = os.listdir(path)
    foreign = [e for e in entries if not (e.startswith("events.out.tfevents.") or e == "plugins")]
    if foreign:
        raise SystemExit(f"{path} holds files the demo did not write ({', '.join(sorted(foreign)[:3])}): "
                         "choose another --logdir")
    for e in entries:
        p = os.path.join(path, e)
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            os.remove(p)


def run_demo(logdir: str, *, runs: Optional[Sequence[str]] = None, quick: bool = False, seed: int = 0) -> list[dict]:
    """Run the chosen demo runs (default: all) into ``<logdir>/<name>``; returns their summaries."""
    names = list(RUNS) if not runs else list(runs)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise SystemExit(f"unknown demo run {unknown[0]!r}: choose from {', '.join(RUNS)}")
    out = []
    for name in names:
        run_dir = os.path.join(logdir, name)
        _fresh_run_dir(run_dir)
        out.append(get_run(name)(run_dir, quick=quick, seed=seed))
    return out
