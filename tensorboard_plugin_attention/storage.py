"""Storage I/O, one module for local files and object stores: byte-range reads and asset-file writes.

The format (what the bytes mean) is in format.py; this module only says where bytes go and how they come back.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from . import format as fmt


def asset_dir(run_dir: str) -> str:
    return join_path(run_dir, fmt.ASSET_SUBDIR)


def join_path(a: str, b: str) -> str:
    """Join a path under a local or remote (``scheme://``) directory."""
    return a.rstrip("/") + "/" + b if "://" in a else os.path.join(a, b)


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def local_path(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def read_range(path: str, offset: int, size: int) -> bytes:
    """Read up to ``size`` bytes at ``offset`` (local files directly, others through TensorBoard's gfile).

    Never more than the file holds: a length read from a damaged or crafted record cannot make the reader
    allocate past the end of the file (callers treat a short read as truncation)."""
    if offset < 0 or size < 0:
        raise fmt.FormatError(f"{path}: negative offset or length ({offset}, {size})")
    if is_local(path):
        with open(local_path(path), "rb") as f:
            size = max(0, min(size, os.fstat(f.fileno()).st_size - offset))
            f.seek(offset)
            return f.read(size)
    from tensorboard.compat import tf

    size = max(0, min(size, tf.io.gfile.stat(path).length - offset))
    with tf.io.gfile.GFile(path, "rb") as f:
        if hasattr(f, "seek"):
            f.seek(offset)
            return f.read(size)
    data, _ = tf.io.gfile.get_filesystem(path).read(path, True, size, {"opaque_offset": offset})
    return data


class AssetFile:
    """An append-only asset file owned by one writer."""

    def __init__(self, run_dir: str, name: str):
        self.dir = asset_dir(run_dir)
        self.name = name
        self.path = join_path(self.dir, name)
        self.size = 0
        self._fd: Optional[int] = None
        self._f: Any = None
        if is_local(self.path):
            os.makedirs(local_path(self.dir), exist_ok=True)
            self._fd = os.open(local_path(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.size = os.fstat(self._fd).st_size
        else:
            from tensorboard.compat import tf

            tf.io.gfile.makedirs(self.dir)
            self._f = tf.io.gfile.GFile(self.path, "wb")

    def append(self, record: bytes) -> int:
        """Append one whole record, written through to the file system; returns its offset.

        After a failed or short write (disk full, file-size limit) the torn bytes are cut off again and the
        offset re-read from the file, so the next record is indexed where it really lands; the error is
        raised (no index record may point at this one)."""
        offset = self.size
        if self._fd is None:
            self._f.write(record)
            self._f.flush()
            self.size += len(record)
            return offset
        view = memoryview(record)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except BaseException:
            try:
                os.ftruncate(self._fd, offset)
            except OSError:
                pass  # then the torn bytes stay, and the next record starts after them
            self.size = os.fstat(self._fd).st_size
            raise
        self.size = offset + len(record)
        return offset

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        elif self._f is not None:
            self._f.close()
            self._f = None
