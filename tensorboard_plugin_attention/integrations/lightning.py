"""``AttentionCallback`` for Lightning (``lightning.pytorch``): log attention (and q/k) of fixed probe texts
while a ``LightningModule`` that holds a transformers model trains.

```python
from tensorboard_plugin_attention.integrations.lightning import AttentionCallback

trainer = lightning.pytorch.Trainer(callbacks=[AttentionCallback(tokenizer, probes, every_n_steps=50)],
                                    logger=TensorBoardLogger("runs"))
```

Imports lightning; ``import tensorboard_plugin_attention`` does not import this module.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from lightning.pytorch import Callback

from .probes import ProbeLike, Schedule, make_runner

__all__ = ["AttentionCallback"]


class AttentionCallback(Callback):
    """Logs the attention of fixed probe texts at chosen global steps, into the run of the Trainer's
    ``TensorBoardLogger`` (beside its scalars, through its own SummaryWriter) when it has one, else into
    ``logdir``.

    At each chosen step the probes run through the transformers model inside the ``LightningModule`` under
    ``capture_attention`` (eval mode and ``no_grad``, modes restored after). Under Lightning's DDP (or any
    strategy with several processes) every rank runs the probes, their pieces become one record on global
    rank 0, and only rank 0 writes.

    Args:
      tokenizer: the tokenizer for the probes.
      texts: probe texts: strings, or ``(a, b)`` tuples for sentence pairs.
      every_n_steps: log when ``trainer.global_step % every_n_steps == 0`` (default: the Trainer's
        ``log_every_n_steps``), unless ``steps`` is given; both combine.
      steps: log at exactly these global steps.
      log_on_train_start, log_on_train_end: also log the model before training / the final step.
      model_attr: attribute of the LightningModule that holds the transformers model (default: the outermost
        transformers ``PreTrainedModel`` inside it, or the module itself).
      logdir: where to write when the Trainer has no ``TensorBoardLogger``
        (default ``<default_root_dir>/attention``).
      queries_keys_every, tag, names, max_length, batch_size, model_name, metric_scalars,
      collective_timeout, images, values: as for the transformers ``AttentionCallback`` (``images``: probe images for a
        vision model instead of texts, ``tokenizer`` then being its image processor).
    """

    def __init__(
        self,
        tokenizer: Any,
        texts: Iterable[ProbeLike],
        *,
        every_n_steps: Optional[int] = None,
        steps: Optional[Iterable[int]] = None,
        log_on_train_start: bool = True,
        log_on_train_end: bool = True,
        model_attr: Optional[str] = None,
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
        self.runner = make_runner(tokenizer, texts, images, names=names, tag=tag, max_length=max_length,
                                  batch_size=batch_size, model_name=model_name,
                                  queries_keys_every=queries_keys_every, metric_scalars=metric_scalars,
                                  collective_timeout=collective_timeout, values=values)
        Schedule(every_n_steps, steps)  # validate now
        self.every_n_steps = every_n_steps
        self.steps = None if steps is None else sorted({int(s) for s in steps})
        self.schedule: Optional[Schedule] = None
        self.log_on_train_start = log_on_train_start
        self.log_on_train_end = log_on_train_end
        self.model_attr = model_attr
        self.logdir = logdir
        self.writer: Any = None  # where records go on global rank 0 (the logger's SummaryWriter, or ours)
        self._own_writer = False
        self._last_step: Optional[int] = None

    @property
    def logged_steps(self) -> list[int]:
        """Global steps at which this process ran the probes (on every rank; only rank 0 writes)."""
        return list(self.runner.logged_steps)

    # -- set-up
    def _model(self, pl_module: Any) -> Any:
        if self.model_attr is not None:
            return getattr(pl_module, self.model_attr)
        from transformers import PreTrainedModel

        for module in pl_module.modules():
            if isinstance(module, PreTrainedModel):
                return module  # modules() walks outermost first
        return pl_module

    def _open_writer(self, trainer: Any) -> Any:
        if not trainer.is_global_zero:
            return None
        from lightning.pytorch.loggers import TensorBoardLogger

        for lg in trainer.loggers:
            if isinstance(lg, TensorBoardLogger):
                self.logdir = lg.log_dir
                return lg.experiment  # a torch SummaryWriter: attention lands in the logger's own event file
        import os

        from ..summary import AttentionWriter

        self.logdir = self.logdir or os.path.join(trainer.default_root_dir, "attention")
        self._own_writer = True
        return AttentionWriter(self.logdir, flush_secs=10, filename_suffix=".attention")

    def _log(self, trainer: Any, pl_module: Any) -> None:
        step = int(trainer.global_step)
        if self._last_step == step:
            return
        if self.runner.log_checkpoint(self.writer, self._model(pl_module), step):
            self._last_step = step

    # -- Callback hooks
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        every = self.every_n_steps
        if every is None and self.steps is None:
            every = int(getattr(trainer, "log_every_n_steps", 0) or 50)
        self.schedule = Schedule(every, self.steps)
        self.writer = self._open_writer(trainer)
        if self.log_on_train_start and (trainer.global_step == 0 or not self.schedule.due(trainer.global_step)):
            self._log(trainer, pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.schedule is not None and self.schedule.due(int(trainer.global_step)):
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.log_on_train_end:
            self._log(trainer, pl_module)
        if self._own_writer and self.writer is not None:
            self.writer.close()
        elif self.writer is not None:
            self.writer.flush()
        self.writer = None
