"""``AttentionCallback``: log attention (and q/k) of fixed probe texts while a ``transformers.Trainer`` trains.

Imports transformers (and, when probes run, torch); ``import tensorboard_plugin_attention`` does not import
this module until ``AttentionCallback`` is first used.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Iterable, Optional, Sequence

from transformers import TrainerCallback

from .probes import ProbeLike, ProbeRunner, Schedule, make_runner

logger = logging.getLogger(__name__)

__all__ = ["AttentionCallback"]


class AttentionCallback(TrainerCallback):
    """Logs the attention of fixed probe texts at chosen training steps, into the Trainer's TensorBoard run.

    At each chosen step the probes run through the model under ``capture_attention`` (batched, eval mode,
    ``torch.no_grad()``, on the model's device; the modules' train/eval modes and the attention
    implementation are restored after) and each probe is logged as its own example at ``state.global_step``.
    Steps in between cost nothing: no hook is installed and the model keeps its own attention implementation.

    Args:
      tokenizer: the tokenizer for the probes (``None``: the Trainer's ``processing_class``).
      texts: probe texts: strings, or ``(a, b)`` tuples for sentence pairs (``sentence_b_start`` is taken
        from the tokenizer).
      every_n_steps: log when ``global_step % every_n_steps == 0`` (default: the Trainer's logging steps,
        so attention lines up with the loss curve; unless ``steps`` is given).
      steps: log at exactly these global steps (e.g. ``log_spaced_steps(max_steps, 12)``); combined with
        ``every_n_steps`` if both are given.
      log_on_train_begin: log step 0 (the model before training) when training starts.
      log_on_evaluate: also log at every evaluation.
      log_on_train_end: also log the final step if it was not logged yet.
      logdir: run directory to write to. Default: the run directory of transformers' own
        ``TensorBoardCallback`` (``$TENSORBOARD_LOGGING_DIR`` or ``<output_dir>/runs/<date>_<host>``), so
        the loss curves and the attention are one run.
      queries_keys_every: keep queries/keys on every N-th logged checkpoint (1: all; 0: never). q/k is
        what the neuron view needs, and the larger part of what is written.
      tag: TensorBoard tag of the probes (examples are ``<tag>/<name>``).
      names: example names, one per probe (default ``"0"``, ``"1"``, ...).
      max_length, batch_size: truncation length and probes per forward pass.
      model_name: shown in the tab (default: from the model's config).
      metric_scalars: also write each layer's strongest-head metrics (entropy, ...) as TensorBoard scalars.
      collective_timeout: seconds a rank waits for the others at the probes' exchange before every rank
        raises ``DistributedCaptureError`` (default 300).
      images: probe images (PIL images or ``H x W x 3`` uint8 arrays) for a vision model, instead of texts;
        ``tokenizer`` is then its image processor (default: the Trainer's ``processing_class``). Each is
        logged with its image and patch grid (``ImageProbeRunner``).
      values: also record each key's value norm ``||v_j W_O^h||`` (``capture_attention(values=True)``): the tab's
        "value-weighted" toggle and ``read_attention(weighting="value")`` then show value-weighted attention.

    With several processes (DDP, FSDP, tensor / pipeline parallel) every rank runs the probes, since sharded
    models need all ranks in a forward pass; the pieces become one record on the world's process zero, the
    only one that writes (docs/distributed.md).
    """

    def __init__(
        self,
        tokenizer: Any = None,
        texts: Iterable[ProbeLike] = (),
        *,
        every_n_steps: Optional[int] = None,
        steps: Optional[Iterable[int]] = None,
        log_on_train_begin: bool = True,
        log_on_evaluate: bool = True,
        log_on_train_end: bool = True,
        logdir: Optional[str] = None,
        queries_keys_every: Optional[int] = 1,
        tag: str = "probes",
        names: Optional[Sequence[str]] = None,
        max_length: int = 128,
        batch_size: int = 16,
        model_name: Optional[str] = None,
        metric_scalars: bool = True,
        collective_timeout: Optional[float] = None,
        images: Optional[Iterable[Any]] = None,
        values: bool = False,
    ):
        self.texts = list(texts)
        self.images = None if images is None else list(images)
        if not self.texts and not self.images:
            raise ValueError("AttentionCallback needs probe texts: texts=['a sentence', ('sentence A', 'sentence B')]"
                             " (or probe images: images=[...] with the image processor as tokenizer)")
        self._runner_args = dict(names=names, tag=tag, max_length=max_length, batch_size=batch_size,
                                 model_name=model_name, queries_keys_every=queries_keys_every,
                                 metric_scalars=metric_scalars, collective_timeout=collective_timeout,
                                 values=values)
        self.tokenizer = tokenizer
        self.runner: Optional[ProbeRunner] = None
        if tokenizer is not None:  # validate the probes now, not when training starts
            self.runner = make_runner(tokenizer, self.texts, self.images, **self._runner_args)
        Schedule(every_n_steps, steps)  # validate
        self.every_n_steps = every_n_steps
        self.steps = None if steps is None else sorted({int(s) for s in steps})
        self.schedule: Optional[Schedule] = None
        self.log_on_train_begin = log_on_train_begin
        self.log_on_evaluate = log_on_evaluate
        self.log_on_train_end = log_on_train_end
        self.logdir = logdir
        self._explicit_logdir = logdir is not None
        self._tb: Any = None  # transformers' TensorBoardCallback of the Trainer, if it has one
        self.writer: Any = None  # our own AttentionWriter, when not writing through the TensorBoardCallback
        self._last_step: Optional[int] = None

    # -- public read-only view
    @property
    def logged_steps(self) -> list[int]:
        """Global steps at which this process ran the probes (on every rank; only rank 0 writes)."""
        return [] if self.runner is None else list(self.runner.logged_steps)

    # -- set-up
    def _ensure_runner(self, kwargs: dict) -> ProbeRunner:
        if self.runner is None:
            tok = kwargs.get("processing_class") or kwargs.get("tokenizer")
            if tok is None or not callable(tok):
                raise ValueError("AttentionCallback: pass a tokenizer (the Trainer has no processing_class)")
            self.runner = make_runner(tok, self.texts, self.images, **self._runner_args)
        return self.runner

    def _resolve_logdir(self, args: Any) -> str:
        if self.logdir is not None:
            return str(self.logdir)
        tb = self._tb
        if tb is not None:
            wdir = _writer_dir(getattr(tb, "tb_writer", None))
            if wdir:
                return wdir
            if getattr(tb, "logging_dir", None) is None:
                # We run before TensorBoardCallback.on_train_begin: choose its directory for it (the same
                # default it would choose), so that both write into one run whatever the callback order.
                from transformers.integrations.integration_utils import default_logdir

                tb.logging_dir = os.path.join(args.output_dir, default_logdir())
            return str(tb.logging_dir)
        env = os.getenv("TENSORBOARD_LOGGING_DIR")
        if env:
            return os.path.expanduser(env)
        legacy = getattr(args, "logging_dir", None)  # transformers 4.x
        if legacy:
            return str(legacy)
        from transformers.integrations.integration_utils import default_logdir

        return os.path.join(args.output_dir or ".", default_logdir())

    def _writer(self, args: Any, state: Any) -> Any:
        """Where to write (``None`` on processes other than the world's process zero).

        Without an explicit ``logdir``, through the SummaryWriter of transformers' TensorBoardCallback while
        it is open: one event file per run, which TensorBoard's Python loader (``--load_fast=false``) keeps
        polling too (it polls only the newest event file of a run). Otherwise an ``AttentionWriter`` of our
        own in that run directory.
        """
        if not state.is_world_process_zero:
            return None
        if not self._explicit_logdir and self._tb is not None:
            tb_writer = getattr(self._tb, "tb_writer", None)
            if tb_writer is not None and _writer_dir(tb_writer) and hasattr(tb_writer, "_get_file_writer"):
                self.logdir = _writer_dir(tb_writer)
                return tb_writer
        if self.writer is None:
            from ..summary import AttentionWriter

            self.logdir = self._resolve_logdir(args)
            self.writer = AttentionWriter(self.logdir, flush_secs=10, filename_suffix=".attention")
        return self.writer

    def _log(self, args: Any, state: Any, kwargs: dict) -> None:
        step = int(state.global_step)
        if self._last_step == step:  # e.g. an evaluation right after a logged step
            return
        model = kwargs.get("model")
        if model is None:
            raise ValueError("AttentionCallback: the Trainer passed no model to the callback")
        runner = self._ensure_runner(kwargs)
        if runner.log_checkpoint(self._writer(args, state), model, step):
            self._last_step = step

    # -- TrainerCallback events
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        every = self.every_n_steps
        if every is None and self.steps is None:
            every = int(getattr(state, "logging_steps", 0) or getattr(args, "logging_steps", 0) or 0) or 500
        self.schedule = Schedule(every, self.steps)
        self._ensure_runner(kwargs)
        self._tb = _tensorboard_callback()
        if state.is_world_process_zero:  # fix the run directory now (TensorBoardCallback's, if there is one)
            self.logdir = self._resolve_logdir(args)
        step = int(state.global_step)
        # on resume, a due step was logged at the end of that step in the earlier session
        if self.log_on_train_begin and (step == 0 or not self.schedule.due(step)):
            self._log(args, state, kwargs)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = int(state.global_step)
        last = self.log_on_train_end and step >= int(getattr(state, "max_steps", 0) or 0) > 0
        # the last step is logged here rather than on_train_end, while TensorBoardCallback's writer is open
        if last or (self.schedule is not None and self.schedule.due(step)):
            self._log(args, state, kwargs)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.log_on_evaluate:
            self._log(args, state, kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.log_on_train_end:
            self._log(args, state, kwargs)
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _writer_dir(writer: Any) -> Optional[str]:
    if writer is None:
        return None
    d = writer.get_logdir() if hasattr(writer, "get_logdir") else getattr(writer, "log_dir", None)
    return None if d is None else str(d)


def _tensorboard_callback() -> Any:
    """transformers' ``TensorBoardCallback`` of the Trainer calling us, found through the calling
    ``CallbackHandler`` (callbacks are not given the handler or the trainer)."""
    from transformers.trainer_callback import CallbackHandler

    try:
        from transformers.integrations import TensorBoardCallback
    except ImportError:  # pragma: no cover
        return None
    frame = inspect.currentframe()
    try:
        depth = 0
        while frame is not None and depth < 8:
            handler = frame.f_locals.get("self")
            if isinstance(handler, CallbackHandler):
                return next((cb for cb in handler.callbacks if isinstance(cb, TensorBoardCallback)), None)
            frame = frame.f_back
            depth += 1
    finally:
        del frame
    return None
