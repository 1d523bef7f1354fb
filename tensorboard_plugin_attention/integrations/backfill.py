"""Backfill: log the attention of probe texts for checkpoints saved during an earlier training run.

``python -m tensorboard_plugin_attention backfill out/checkpoint-* --texts probes.txt --logdir runs/exp1``

Each checkpoint directory is a ``save_pretrained`` folder (``checkpoint-<step>`` from the Trainer, or any
other); its step is taken from ``--step`` (one per directory), else ``trainer_state.json``'s
``global_step``, else the number the folder name ends with. Checkpoints are logged in step order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any, Iterable, Iterator, Optional, Sequence

from .probes import ProbeLike, ProbeRunner, load_probes, model_name_of

__all__ = ["backfill", "checkpoint_step"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")


def checkpoint_step(path: str) -> int:
    """The training step of a saved checkpoint: ``trainer_state.json``'s ``global_step``, else the number
    its folder name ends with (``checkpoint-500`` -> 500). ``ValueError`` if neither is there."""
    state = os.path.join(path, "trainer_state.json")
    if os.path.isfile(state):
        try:
            with open(state, encoding="utf-8") as f:
                step = json.load(f).get("global_step")
            if isinstance(step, int) and step >= 0:
                return step
        except (OSError, ValueError):
            pass
    m = re.search(r"(\d+)$", os.path.basename(os.path.normpath(path)))
    if m:
        return int(m.group(1))
    raise ValueError(f"{path}: cannot tell its training step (no trainer_state.json, no number at the end of "
                     "the folder name): pass --step, one per checkpoint directory")


def _check_no_purge(logdir: str, tag: str, steps: Sequence[int]) -> None:
    """Refuse a backfill that would hide records already in the run.

    TensorBoard's default loader (``--load_fast=true``) drops, per tag, every record with a step >= s read
    before a record at step s (docs/writers.md). Our event file sorts after the run's existing ones, so the
    first backfilled step would hide every existing record of the same tag above it that we do not write
    again. Re-running a backfill (the same steps) is fine.
    """
    from ..step_guard import StepGuard

    guard = StepGuard(logdir)
    guard.scan()
    first, ours = min(steps), set(steps)
    hidden = sorted({s for name, found in guard.steps.items() if name.startswith(tag + "/")
                     for s in found if s > first and s not in ours})
    if hidden:
        shown = ", ".join(map(str, hidden[:8])) + (", ..." if len(hidden) > 8 else "")
        raise ValueError(
            f"{logdir} already has attention under tag {tag!r} at steps {shown}: backfilling step {first} into the "
            "same tag would make TensorBoard's default loader (--load_fast=true) drop them (it takes steps going "
            "backwards for a restart; docs/writers.md). Backfill under another tag (--tag, e.g. "
            f"{tag + '_backfill'!r}) or into another run directory.")


def _find_tokenizer(paths: Sequence[str]) -> str:
    for p in paths:
        if any(os.path.isfile(os.path.join(p, f)) for f in _TOKENIZER_FILES):
            return p
    raise ValueError("none of the checkpoint directories holds a tokenizer: pass --tokenizer PATH")


def _model_class(name: str, path: str) -> Any:
    """The class to load ``path`` with: ``"auto"`` is the architecture its config names (what was saved,
    head included: nothing unexpected in the weights), else ``AutoModel``; or a transformers class name."""
    import transformers

    if name == "auto":
        from transformers import AutoConfig

        archs = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
        cls = next((getattr(transformers, a) for a in archs if hasattr(transformers, a)), None)
        return cls or transformers.AutoModel
    cls = getattr(transformers, name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(f"unknown model class {name!r}: use a transformers model class, e.g. AutoModel or "
                         "AutoModelForCausalLM")
    return cls


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No per-checkpoint loading bars and load reports under our own progress bar."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def backfill(
    checkpoints: Sequence[str],
    texts: Any,
    logdir: str,
    *,
    tokenizer: Any = None,
    steps: Optional[Sequence[int]] = None,
    tag: str = "probes",
    names: Optional[Sequence[str]] = None,
    max_length: int = 128,
    batch_size: int = 16,
    model_name: Optional[str] = None,
    model_class: str = "auto",
    queries_keys: bool = True,
    device: Optional[str] = None,
    progress: bool = True,
) -> list[tuple[str, int]]:
    """Load each checkpoint, run the probes, log them at the checkpoint's step into ``logdir``.

    Args:
      checkpoints: ``save_pretrained`` directories.
      texts: a probe file (one per line, a tab separates a sentence pair) or a list of probes.
      logdir: the run directory to write to (e.g. the training run's, to see it next to the loss).
      tokenizer: a tokenizer or its path (default: the first checkpoint directory holding one).
      steps: one step per checkpoint (default: ``checkpoint_step`` of each).
      model_class: the transformers class to load with: ``"auto"`` (default) the architecture the
        checkpoint's config names, else ``AutoModel``; or a class name such as ``AutoModelForCausalLM``.
      queries_keys: log queries/keys too.
      device: where to run (default: ``cuda`` if available, else ``cpu``).
      progress: show a tqdm progress bar.

    Returns ``(checkpoint, step)`` in the order logged (by step).
    """
    import torch
    from transformers import AutoTokenizer

    from ..summary import AttentionWriter

    checkpoints = [str(c) for c in checkpoints]
    if not checkpoints:
        raise ValueError("no checkpoint directories given")
    for c in checkpoints:
        if not os.path.isdir(c):
            raise ValueError(f"{c} is not a directory (expected a save_pretrained / checkpoint-<step> folder)")
    if steps is not None:
        steps = [int(s) for s in steps]
        if len(steps) != len(checkpoints):
            raise ValueError(f"{len(steps)} steps for {len(checkpoints)} checkpoint directories: give one per directory")
        if any(s < 0 for s in steps):
            raise ValueError("steps must be non-negative")
    else:
        steps = [checkpoint_step(c) for c in checkpoints]
    order = sorted(zip(steps, checkpoints))
    dupes = sorted({s for s, _ in order if steps.count(s) > 1})
    if dupes:
        raise ValueError(f"several checkpoints have step {dupes[0]}: pass --step to tell them apart")
    probes: Iterable[ProbeLike] = load_probes(texts) if isinstance(texts, (str, os.PathLike)) else texts
    if tokenizer is None:
        tokenizer = _find_tokenizer([c for _, c in order])
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    runner = ProbeRunner(tokenizer, probes, names=names, tag=tag, max_length=max_length, batch_size=batch_size,
                         model_name=model_name)
    _check_no_purge(logdir, tag, [s for s, _ in order])
    if model_class != "auto":
        _model_class(model_class, "")  # validate before loading anything
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="backfill", unit="ckpt")
    done = []
    with AttentionWriter(logdir) as writer:
        for step, path in order:
            if bar is not None:
                bar.set_postfix_str(f"step {step}")
            with _quiet_loading():
                model = _model_class(model_class, path).from_pretrained(path).to(dev)
            if runner.model_name is None:
                runner.model_name = model_name_of(model)
            runner.log(writer, model, step, queries_keys=queries_keys)
            del model
            done.append((path, step))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return done
