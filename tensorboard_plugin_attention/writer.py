"""Where ``log_attention`` writes: the :class:`AttentionSink` protocol and its two implementations.

* :class:`EventFileSink` — an ``AttentionWriter``'s own files: TensorBoard's ``EventFileWriter`` for index
  records, an append-only asset file for arrays, and (by default) a background thread that encodes and writes;
* :class:`SummaryWriterSink` — a ``torch.utils.tensorboard.SummaryWriter``'s event file (duck-typed: torch
  is not imported), written synchronously.

numpy only; nothing here knows what a record holds (``summary`` builds them).
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Optional, Protocol, Sequence, Union

from tensorboard.compat.proto import event_pb2, summary_pb2

from . import format as fmt
from . import storage
from .step_guard import StepGuard, event_file_name

__all__ = ["AttentionSink", "BackgroundWriteError", "EventFileSink", "SummaryWriterSink", "new_asset_name"]


class BackgroundWriteError(RuntimeError):
    """Writing an earlier record failed in an ``AttentionWriter``'s background thread (an I/O error: input
    errors are raised at the call). Raised at the next call, ``flush()`` or ``close()``; a record passed to
    the call that raises it was accepted all the same and is written."""


class AttentionSink(Protocol):
    """What ``log_attention`` needs from a writer: the record's bytes first, then the index record that
    points to them, in a job the sink runs now or in its own thread."""

    logdir: str
    steps: StepGuard  # the run's attention steps, to warn before a step goes backwards

    def check_open(self) -> None:
        """Raise ``ValueError`` if nothing more can be written."""

    def append_asset(self, record: Union[bytes, Sequence[bytes]]) -> tuple[str, int]:
        """Append an asset record (its bytes, or its pieces in order); returns (file name, offset) for its
        index record."""

    def add_summary(self, summary: summary_pb2.Summary, step: int, wall_time: float) -> None:
        """Write a ``Summary`` to the run's event file."""

    def submit(self, job: Callable[[], None], what: str = "a record") -> None:
        """Run ``job`` (which writes ``what``), now or in the background; raises an earlier background
        failure as ``BackgroundWriteError``."""


def new_asset_name() -> str:
    """A fresh asset file name: unique across hosts, processes and writers."""
    return f"{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}{fmt.ASSET_SUFFIX}"


class EventFileSink:
    """An ``AttentionWriter``'s files: index records through TensorBoard's ``EventFileWriter``, arrays in an
    append-only file in ``<logdir>/plugins/attention/``; jobs in a background thread when ``background``."""

    def __init__(self, logdir: str, *, background: bool = True, max_pending: int = 4, max_queue: int = 10,
                 flush_secs: int = 120, filename_suffix: str = ""):
        self.logdir = logdir
        self._events = storage.event_file_writer(self.logdir, max_queue, flush_secs, filename_suffix)
        self._asset: Optional[storage.AssetFile] = None
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()  # closing vs. submitting
        self._closed = False
        self.steps = StepGuard(self.logdir, lambda: event_file_name(self._events))
        self._jobs: Optional["queue.Queue[Optional[tuple[Callable[[], None], str]]]"] = None
        self._failed: list[tuple[str, BaseException]] = []  # (what, error) of background jobs, oldest first
        if background:
            self._jobs = queue.Queue(maxsize=max_pending)
            self._thread = threading.Thread(target=self._work, name="attention-writer", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        assert self._jobs is not None
        while True:
            item = self._jobs.get()
            try:
                if item is None:
                    return
                job, what = item
                job()  # every job runs, also after an earlier one failed: a failure costs only its own record
            except BaseException as e:  # kept and re-raised in the caller's thread
                with self._lock:
                    self._failed.append((what, e))
            finally:
                self._jobs.task_done()

    def raise_pending_error(self, accepted: Optional[str] = None) -> None:
        """Raise the oldest background failure since the last call as ``BackgroundWriteError``."""
        with self._lock:
            failed, self._failed = self._failed, []
        if failed:
            what, e = failed[0]
            more = f" (and {len(failed) - 1} later records)" if len(failed) > 1 else ""
            msg = f"writing attention to {self.logdir} failed for {what}{more}: {type(e).__name__}: {e}"
            if accepted:
                msg += f" ({accepted} of this call was accepted and will be written)"
            raise BackgroundWriteError(msg) from e

    def check_open(self) -> None:
        if self._closed:
            raise ValueError(f"this AttentionWriter ({self.logdir}) is closed: create a new one to write more")

    def submit(self, job: Callable[[], None], what: str = "a record") -> None:
        if self._jobs is None:
            self.check_open()
            job()
            return
        with self._state_lock:  # no job may land behind close()'s end marker
            self.check_open()
            self._jobs.put((job, what))
        self.raise_pending_error(accepted=what)

    def append_asset(self, record: Union[bytes, Sequence[bytes]]) -> tuple[str, int]:
        with self._lock:
            if self._asset is None:
                self._asset = storage.AssetFile(self.logdir, new_asset_name())
            return self._asset.write(record)

    def add_summary(self, summary: summary_pb2.Summary, step: int, wall_time: float) -> None:
        self._events.add_event(event_pb2.Event(summary=summary, step=int(step), wall_time=wall_time))

    def flush(self) -> None:
        """Wait until every pending job has run, then flush the event file."""
        self.check_open()
        if self._jobs is not None:
            self._jobs.join()
        self._events.flush()
        self.raise_pending_error()

    def close(self) -> None:
        """Run what is pending and close the files (closing again does nothing)."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            if self._jobs is not None:
                self._jobs.put(None)
        if self._jobs is not None:
            self._thread.join()
        self._events.close()
        with self._lock:
            if self._asset is not None:
                self._asset.close()
                self._asset = None
        self.raise_pending_error()


class SummaryWriterSink:
    """Lets ``log_attention`` write through a ``torch.utils.tensorboard.SummaryWriter`` (duck-typed)."""

    _assets: "weakref.WeakKeyDictionary[Any, storage.AssetFile]" = weakref.WeakKeyDictionary()
    _guards: "weakref.WeakKeyDictionary[Any, StepGuard]" = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, writer: Any):
        self.writer = writer
        self.logdir = writer.get_logdir() if hasattr(writer, "get_logdir") else writer.log_dir
        with self._lock:
            guard = self._guards.get(writer)
            if guard is None:
                guard = self._guards[writer] = StepGuard(
                    str(self.logdir), lambda: event_file_name(getattr(writer._get_file_writer(), "event_writer", None)))
        self.steps = guard

    @staticmethod
    def accepts(writer: Any) -> bool:
        """Whether ``writer`` looks like a ``SummaryWriter`` (torch is not imported to check)."""
        return hasattr(writer, "_get_file_writer") and (hasattr(writer, "get_logdir") or hasattr(writer, "log_dir"))

    def check_open(self) -> None:
        pass  # a closed SummaryWriter reopens its file on the next write

    def append_asset(self, record: Union[bytes, Sequence[bytes]]) -> tuple[str, int]:
        with self._lock:
            asset = self._assets.get(self.writer)
            if asset is None:
                asset = self._assets[self.writer] = storage.AssetFile(self.logdir, new_asset_name())
            return asset.write(record)

    def submit(self, job: Callable[[], None], what: str = "a record") -> None:
        job()  # SummaryWriter users get synchronous writes: their writer has no background thread of ours

    def add_summary(self, summary: summary_pb2.Summary, step: int, wall_time: float) -> None:
        self.writer._get_file_writer().add_summary(summary, int(step), wall_time)
