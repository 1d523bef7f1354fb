"""``AttentionLogger``: log attention (and q/k) of fixed probe texts from a plain PyTorch training loop.

```python
logger = AttentionLogger(model, tokenizer, ["The cat sat.", ("A man is eating.", "Someone eats.")],
                         "runs/exp1", every_n_steps=100)
for step, batch in enumerate(loader):
    logger.maybe_log(step)        # probes run only when due
    loss = model(**batch).loss
    ...
logger.close()
```
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from .probes import ProbeLike, Schedule, make_runner

__all__ = ["AttentionLogger"]


def _is_main_process() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return True
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class AttentionLogger:
    """Runs fixed probe texts through ``model`` under ``capture_attention`` when due and logs them.

    Args:
      model: the model being trained (a transformers model, or a module containing one).
      tokenizer: its tokenizer.
      texts: probe texts: strings or ``(a, b)`` sentence pairs.
      logdir: the run directory (e.g. the one your ``SummaryWriter`` writes to, so loss and attention are one
        run), or a ``torch.utils.tensorboard.SummaryWriter`` / ``AttentionWriter`` to write through.
      every_n_steps: ``maybe_log(step)`` logs when ``step % every_n_steps == 0``.
      steps: ``maybe_log(step)`` logs at exactly these steps (e.g. ``log_spaced_steps(total, 12)``).
      queries_keys_every: keep q/k on every N-th logged checkpoint (1: all; 0: never).
      tag, names, max_length, batch_size, model_name, metric_scalars: as for ``AttentionCallback``.
      is_main_process: whether this process writes (default: rank 0 of ``torch.distributed`` if it is
        initialised, else True). Every process runs the probes: call ``maybe_log`` on all ranks; the pieces
        of a sharded model (tensor / pipeline parallel) become one record on rank 0 (docs/distributed.md).
      collective_timeout: seconds a rank waits for the others at the probes' exchange before every rank
        raises ``DistributedCaptureError`` (default 300).
      images: probe images (PIL images or ``H x W x 3`` uint8 arrays) for a vision model, instead of texts
        (pass ``[]``); ``tokenizer`` is then its image processor. Each is logged with its image and patch grid.
      values: also record value norms for value-weighted attention (as for ``AttentionCallback``).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        texts: Iterable[ProbeLike],
        logdir: Any,
        *,
        every_n_steps: Optional[int] = 100,
        steps: Optional[Iterable[int]] = None,
        queries_keys_every: Optional[int] = 1,
        tag: str = "probes",
        names: Optional[Sequence[str]] = None,
        max_length: int = 128,
        batch_size: int = 16,
        model_name: Optional[str] = None,
        metric_scalars: bool = True,
        is_main_process: Optional[bool] = None,
        collective_timeout: Optional[float] = None,
        images: Optional[Iterable[Any]] = None,
        values: bool = False,
    ):
        self.model = model
        self.runner = make_runner(tokenizer, texts, images, names=names, tag=tag, max_length=max_length,
                                  batch_size=batch_size, model_name=model_name,
                                  queries_keys_every=queries_keys_every, metric_scalars=metric_scalars,
                                  collective_timeout=collective_timeout, values=values)
        self.schedule = Schedule(every_n_steps, steps)
        self.is_main_process = _is_main_process() if is_main_process is None else bool(is_main_process)
        self._own_writer = isinstance(logdir, (str, bytes)) or hasattr(logdir, "__fspath__")
        self.logdir = str(logdir) if self._own_writer else getattr(logdir, "logdir", None) or getattr(logdir, "log_dir", None)
        self._writer: Any = None if self._own_writer else logdir
        self._last_step: Optional[int] = None

    @property
    def writer(self) -> Any:
        """The writer (created on first use, on the main process only)."""
        if not self.is_main_process:
            return None
        if self._writer is None:
            from ..summary import AttentionWriter

            self._writer = AttentionWriter(self.logdir, flush_secs=10, filename_suffix=".attention")
        return self._writer

    @property
    def logged_steps(self) -> list[int]:
        """Steps at which this process ran the probes."""
        return list(self.runner.logged_steps)

    def due(self, step: int) -> bool:
        return self.schedule.due(int(step)) and self._last_step != int(step)

    def maybe_log(self, step: int) -> bool:
        """Log the probes if ``step`` is due (and not logged yet); returns whether it logged."""
        if not self.due(step):
            return False
        return self.log(step)

    def log(self, step: int) -> bool:
        """Log the probes at ``step`` now. Errors at the first logged step raise; later ones are warned
        about and the step skipped (logging never ends a long run). Returns whether it logged."""
        done = self.runner.log_checkpoint(self.writer, self.model, int(step))
        if done:
            self._last_step = int(step)
        return done

    def close(self) -> None:
        if self._own_writer and self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "AttentionLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
