"""Steps going backwards: where each attention tag's steps are in a run's event files, so that the writer can
warn before a write that TensorBoard's fast loader would take for a restart (docs/writers.md). Used by the
writer (``summary``) and by ``integrations.backfill``.
"""

from __future__ import annotations

import glob
import logging
import os
import struct
import threading
from typing import Any, Callable, Optional

from tensorboard.compat.proto import event_pb2

from . import storage
from .metadata import PLUGIN_NAME

logger = logging.getLogger(__name__)

__all__ = ["StepGuard", "event_file_name"]

_RECORD_HEAD = struct.Struct("<QI")  # TFRecord: length, masked CRC of the length; then data, masked CRC
_PLUGIN_NAME_BYTES = PLUGIN_NAME.encode()
SCAN_CHUNK = 1 << 24  # event files are read in pieces: a large run's loss file is never held whole


class StepGuard:
    """Where each attention tag's steps are in a run's event files, to warn before a write that TensorBoard's
    fast loader would take for a restart (docs/writers.md).

    ``--load_fast=true`` (the Rust data server) keeps one reservoir per run and tag, and a record it reads at
    step s drops that tag's records with step >= s read before it. It reads a run's event files in name order,
    each to its end, every reload. So writing step s to file F loses data (now or at the next cold start) when
    the tag already has a step > s anywhere (read before s, at least on a live reload), or a step < s in a
    file named after F (read after s at a cold start). The run's local event files are read incrementally
    (only what was appended since the last check), so another writer on the same run is seen too; a remote
    run's event files are read once, at the first check (what earlier or other writers left), then only this
    writer's own steps count (no listing per record).
    """

    def __init__(self, logdir: str, own_file: Callable[[], Optional[str]] = lambda: None):
        self.logdir = logdir
        self._own_file = own_file  # this writer's event file, if known
        self.ranges: dict[str, dict[str, list[int]]] = {}  # tag -> event file name -> [min step, max step]
        self.steps: dict[str, set[int]] = {}  # every step of each attention tag found in the files
        self._offsets: dict[str, int] = {}
        self._remote_scanned = False
        self._written: set[tuple[str, int]] = set()  # (tag, step) this writer wrote
        self._warned = self._warned_twice = False
        self._lock = threading.Lock()

    def scan(self) -> dict[str, dict[str, list[int]]]:
        """Read what was appended to the run's event files; returns ``ranges``."""
        if not storage.is_local(self.logdir):
            if not self._remote_scanned:
                self._remote_scanned = True
                try:
                    names = storage.list_dir(self.logdir)
                except OSError as e:
                    logger.debug("attention: not checking steps already in %s: %s", self.logdir, e)
                    names = []
                for name in sorted(n for n in names if "tfevents" in n):
                    try:
                        self._scan_file(storage.join_path(self.logdir, name))
                    except OSError:
                        continue
            return self.ranges
        pattern = os.path.join(glob.escape(storage.local_path(self.logdir)), "*tfevents*")
        for path in sorted(glob.glob(pattern)):
            try:
                self._scan_file(path)
            except OSError:
                continue  # removed or unreadable: TensorBoard cannot read it either
        return self.ranges

    def _note(self, tag: str, file: str, step: int) -> None:
        r = self.ranges.setdefault(tag, {}).setdefault(file, [step, step])
        r[0], r[1] = min(r[0], step), max(r[1], step)

    def _scan_file(self, path: str) -> None:
        offset = self._offsets.get(path, 0)
        name = os.path.basename(path)
        buf = b""
        with storage.open_read(path) as f:
            f.seek(offset)
            while True:
                chunk = f.read(SCAN_CHUNK)
                if not chunk:
                    break
                buf += chunk
                used = self._scan_records(buf, name)
                offset += used
                buf = buf[used:]
        self._offsets[path] = offset  # a record still being appended is read again next time

    def _scan_records(self, data: bytes, name: str) -> int:
        """Note the attention records among the complete TFRecords in ``data``; returns the bytes consumed."""
        pos = 0
        while pos + _RECORD_HEAD.size <= len(data):
            n, _ = _RECORD_HEAD.unpack_from(data, pos)
            end = pos + _RECORD_HEAD.size + n + 4
            if end > len(data):
                break
            body = data[pos + _RECORD_HEAD.size: end - 4]
            pos = end
            if _PLUGIN_NAME_BYTES not in body:  # cheap: only events of our plugin are parsed
                continue
            try:
                event = event_pb2.Event.FromString(body)
            except Exception:  # noqa: BLE001 - a damaged record: TensorBoard skips it too
                continue
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == PLUGIN_NAME:
                    self._note(value.tag, name, event.step)
                    self.steps.setdefault(value.tag, set()).add(event.step)
        return pos

    def check(self, index_tag: str, step: int) -> None:
        """Note that ``step`` of ``index_tag`` (``<tag>/<example>``) is about to be written by this writer;
        warn (once per writer) if the fast loader would drop records of that tag because of it."""
        own = self._own_file() or ""
        with self._lock:
            twice = (index_tag, step) in self._written and not self._warned_twice
            self._written.add((index_tag, step))
            self._warned_twice |= twice
            files = self.scan().get(index_tag, {})
            higher = max((r[1] for r in files.values() if r[1] > step), default=None)
            lower_after = min((r[0] for f, r in files.items() if own and f > own and r[0] < step), default=None)
            self._note(index_tag, own, step)
            warn = (higher is not None or lower_after is not None) and not self._warned
            self._warned |= warn
        if twice:
            logger.warning("attention %r is logged twice at step %d by one writer: readers show the later record "
                           "only (give each example its own name with example=). Warned once per writer.",
                           index_tag, step)
        if not warn:
            return
        if higher is not None:
            why = (f"step {higher} of the same tag is already in run {self.logdir}: when it reads step {step} "
                   f"after it, TensorBoard's default loader (--load_fast=true) drops every step >= {step} of that "
                   "tag it has read before")
        else:
            why = (f"another writer's event file in run {self.logdir}, named after this writer's, holds step "
                   f"{lower_after} of the same tag: TensorBoard's default loader (--load_fast=true) reads files in "
                   f"name order, so at its next start that step will drop this step {step} and everything above it")
        logger.warning(
            "attention %r at step %d: %s (it takes steps going backwards for a restart; --load_fast=false keeps "
            "them). Expected when training resumed from a checkpoint; otherwise give each writer its own tag or "
            "run directory (docs/writers.md). Warned once per writer.", index_tag, step, why)


def event_file_name(events: Any) -> Optional[str]:
    """The file name of a TensorBoard ``EventFileWriter`` (a private attribute: None if it is not there)."""
    name = getattr(events, "_file_name", None)
    return os.path.basename(name) if isinstance(name, str) else None
