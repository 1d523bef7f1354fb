"""Storage I/O, one module for local files and object stores: byte-range reads and asset writes.

The format (what the bytes mean) is in format.py; this module only says where bytes go and how they come back.

* **Local paths** (and ``file://``): one append-only asset file per writer, read with ``pread``-style seeks.
* **Object stores** (``s3://``, ``gs://``, any fsspec URL): objects are immutable and appear whole or not at
  all, so every asset record is its own object, named ``<time>.<host>.<pid>.<random>.<n>.attn`` (writers
  never collide), uploaded completely before the index record that points at it is written. Reads are byte
  ranges (one ranged GET per request), never listings: the index records say where everything is.

``s3://`` goes through boto3 configured as TensorBoard's gfile configures it (``S3_ENDPOINT``, else boto3's
own ``AWS_ENDPOINT_URL`` and credentials), one client per process (gfile builds a boto3 resource per read:
25 ms instead of 4 ms per request); other schemes through fsspec (``gs://``: gcsfs, honouring
``STORAGE_EMULATOR_HOST``). Nothing remote is imported for local paths.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional, Sequence, Union

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


class StorageError(OSError):
    """A remote read or write failed; the message names the URL and the storage library's error."""


# ------------------------------------------------------------------------------------ remote backends
class _S3:
    """s3:// through boto3, configured as TensorBoard's gfile configures it."""

    def __init__(self) -> None:
        import boto3
        import botocore.config
        import botocore.exceptions

        self._errors = botocore.exceptions
        # the same endpoint rule as tensorboard.compat.tensorflow_stub.io.gfile.S3FileSystem
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=os.environ.get("S3_ENDPOINT") or None,
            config=botocore.config.Config(max_pool_connections=32, retries={"max_attempts": 3}))

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        bucket, _, key = url[len("s3://"):].partition("/")
        return bucket, key

    def read(self, url: str, offset: int, size: int) -> bytes:
        bucket, key = self._split(url)
        try:  # the store bounds the body by the object's size: a crafted length allocates nothing
            r = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + size - 1}")
        except self._errors.ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("InvalidRange", "416"):
                return b""  # offset at or past the end
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{url}: no such object") from None
            raise
        return r["Body"].read()

    def put(self, url: str, data: bytes) -> None:
        bucket, key = self._split(url)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)  # visible whole, or not at all

    def list(self, url: str) -> list:
        bucket, key = self._split(url.rstrip("/") + "/")
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key, Delimiter="/")
        return [o["Key"][len(key):] for p in pages for o in p.get("Contents", [])]


class _Fsspec:
    """Any other scheme through fsspec (gs:// is gcsfs)."""

    _SIZED = 1 << 24  # reads larger than this are first bounded by the object's size (fs.size, cached)

    def __init__(self, protocol: str) -> None:
        import fsspec

        self.fs = fsspec.filesystem(protocol, skip_instance_cache=True)
        self._sizes: "OrderedDict[str, int]" = OrderedDict()
        self._lock = threading.Lock()

    def read(self, url: str, offset: int, size: int) -> bytes:
        path = self.fs._strip_protocol(url)
        if size > self._SIZED:  # some filesystems allocate the requested length before reading
            with self._lock:
                n = self._sizes.get(path)
            if n is None:
                n = int(self.fs.size(path))
                with self._lock:
                    self._sizes[path] = n
                    while len(self._sizes) > 4096:
                        self._sizes.popitem(last=False)
            size = max(0, min(size, n - offset))
            if size == 0:
                return b""
        try:
            return self.fs.cat_file(path, start=offset, end=offset + size)
        except FileNotFoundError:
            raise FileNotFoundError(f"{url}: no such object") from None

    def put(self, url: str, data: bytes) -> None:
        self.fs.pipe_file(self.fs._strip_protocol(url), data)

    def list(self, url: str) -> list:
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.fs._strip_protocol(url), detail=False)]
        except FileNotFoundError:
            return []


_backends: dict[tuple, Any] = {}
_backends_lock = threading.Lock()


_ENDPOINT_VARS = ("S3_ENDPOINT", "AWS_ENDPOINT_URL", "STORAGE_EMULATOR_HOST")


def _backend(url: str) -> Any:
    scheme = url.split("://", 1)[0]
    key = (scheme, *(os.environ.get(v) for v in _ENDPOINT_VARS))  # a changed endpoint gets its own client
    with _backends_lock:
        b = _backends.get(key)
        if b is None:
            if scheme == "s3":
                try:
                    b = _S3()
                except ImportError:  # as TensorBoard's gfile: s3fs through fsspec when boto3 is missing
                    b = _Fsspec(scheme)
            else:
                try:
                    b = _Fsspec(scheme)
                except (ImportError, ValueError) as e:
                    raise StorageError(f"{url}: no storage library for {scheme}:// ({e}); install "
                                       f"tensorboard-plugin-attention[s3] or [gcs], or the fsspec "
                                       f"implementation of {scheme}://") from None
            _backends[key] = b
        return b


# What remote reads cost, for the benchmark and tests (this process only).
STATS = {"requests": 0, "bytes": 0}
_stats_lock = threading.Lock()


class _Blocks:
    """Recently read small ranges of remote objects (bounded in bytes).

    A tiny read (under ``SMALL``: a record's 16-byte frame) fetches ``BLOCK`` bytes from its offset, so the
    header that follows it costs no second request; chunk reads fetch exactly their bytes. Serving bytes from here is safe because a remote asset
    object never changes, and an older append-only file only grows (bytes once written stay the same)."""

    BLOCK = 1 << 16
    SMALL = 1 << 10

    def __init__(self, capacity: int = 32 << 20):
        self.capacity = capacity
        self._items: "OrderedDict[tuple[str, int], bytes]" = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, url: str, offset: int, size: int) -> Optional[bytes]:
        with self._lock:
            for (u, start), data in reversed(self._items.items()):
                if u == url and start <= offset and offset + size <= start + len(data):
                    self._items.move_to_end((u, start))
                    return data[offset - start: offset - start + size]
        return None

    def put(self, url: str, offset: int, data: bytes) -> None:
        with self._lock:
            old = self._items.pop((url, offset), None)
            self._size += len(data) - (len(old) if old is not None else 0)
            self._items[(url, offset)] = data
            while self._size > self.capacity:
                _, d = self._items.popitem(last=False)
                self._size -= len(d)


_blocks = _Blocks()


def _read_remote(url: str, offset: int, size: int) -> bytes:
    hit = _blocks.get(url, offset, size)
    if hit is not None:
        return hit
    n = _blocks.BLOCK if size < _blocks.SMALL else size
    try:
        data = _backend(url).read(url, offset, n)
    except (FileNotFoundError, StorageError):
        raise
    except Exception as e:  # the storage library's own errors, with the URL
        raise StorageError(f"reading {url} ({offset}+{n}) failed: {type(e).__name__}: {e}") from e
    with _stats_lock:
        STATS["requests"] += 1
        STATS["bytes"] += len(data)
    if n > size:
        _blocks.put(url, offset, data)
    return data[:size]


def read_range(path: str, offset: int, size: int) -> bytes:
    """Read up to ``size`` bytes at ``offset``: local files directly, remote objects by one ranged request.

    Never more than the file holds: a length read from a damaged or crafted record cannot make the reader
    allocate past the end of the file (callers treat a short read as truncation)."""
    if offset < 0 or size < 0:
        raise fmt.FormatError(f"{path}: negative offset or length ({offset}, {size})")
    if is_local(path):
        with open(local_path(path), "rb") as f:
            size = max(0, min(size, os.fstat(f.fileno()).st_size - offset))
            f.seek(offset)
            return f.read(size)
    if size == 0:
        return b""
    return _read_remote(path, offset, size)


def put_object(url: str, data: bytes) -> None:
    """Upload ``data`` as the whole object ``url`` (visible complete or not at all); ``StorageError`` names
    the URL and the storage library's error."""
    try:
        _backend(url).put(url, bytes(data))
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(f"uploading {url} failed: {type(e).__name__}: {e}") from e


def list_dir(url: str) -> list:
    """Names of the objects directly under a remote directory. For writers only (the step guard's first look
    at a run): the read path never lists, the index records say where everything is."""
    try:
        return _backend(url).list(url)
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(f"listing {url} failed: {type(e).__name__}: {e}") from e


class RangeReader:
    """A read-only file object over a remote object (``seek``/``read``, each read one ranged request)."""

    def __init__(self, url: str):
        self.url = url
        self._pos = 0

    def __enter__(self) -> "RangeReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def seek(self, offset: int) -> None:
        self._pos = offset

    def read(self, size: int) -> bytes:
        data = read_range(self.url, self._pos, size)
        self._pos += len(data)
        return data


def open_read(path: str) -> Any:
    """A binary file object for reading ``path``: the local file, or a :class:`RangeReader`."""
    return open(local_path(path), "rb") if is_local(path) else RangeReader(path)


# ----------------------------------------------------------------------------------------- asset files
_WRITEV = hasattr(os, "writev")  # not on Windows: there one piece per write
_IOV_MAX = 1024  # pieces per writev (Linux's and macOS's IOV_MAX)

class AssetFile:
    """Where one writer's asset records go: an append-only local file, or one object per record remotely."""

    def __init__(self, run_dir: str, name: str):
        self.dir = asset_dir(run_dir)
        self.name = name
        self.path = join_path(self.dir, name)
        self.size = 0
        self.remote = not is_local(self.path)
        self._fd: Optional[int] = None
        self._count = 0
        if not self.remote:
            os.makedirs(local_path(self.dir), exist_ok=True)
            self._fd = os.open(local_path(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.size = os.fstat(self._fd).st_size

    def write(self, record: Union[bytes, Sequence[bytes]]) -> tuple[str, int]:
        """Store one whole record (its bytes, or its pieces in order); returns ``(file name, offset)`` for its
        index record, which the caller writes only after this returns (the bytes are then readable)."""
        if not self.remote:
            return self.name, self.append(record)
        if not isinstance(record, (bytes, bytearray, memoryview)):
            record = b"".join(record)  # one object per record
        stem = self.name[: -len(fmt.ASSET_SUFFIX)] if self.name.endswith(fmt.ASSET_SUFFIX) else self.name
        name = f"{stem}.{self._count}{fmt.ASSET_SUFFIX}"
        self._count += 1
        put_object(join_path(self.dir, name), record)
        return name, 0

    def append(self, record: Union[bytes, Sequence[bytes]]) -> int:
        """Append one whole record (bytes, or its pieces in order, written with ``writev`` without joining them)
        to the local file, written through to the file system; returns its offset.

        After a failed or short write (disk full, file-size limit) the torn bytes are cut off again and the
        offset re-read from the file, so the next record is indexed where it really lands; the error is
        raised (no index record may point at this one)."""
        if self._fd is None:
            raise ValueError(f"{self.path}: not an open local asset file")
        offset = self.size
        views = [memoryview(record)] if isinstance(record, (bytes, bytearray, memoryview)) else \
            [memoryview(part) for part in record]
        views = [v for v in views if v.nbytes]
        length = sum(v.nbytes for v in views)
        try:
            while views:
                if _WRITEV:
                    done = os.writev(self._fd, views[:_IOV_MAX])
                else:
                    done = os.write(self._fd, views[0])
                while done:  # drop what was written (a short write leaves part of a piece)
                    if done >= views[0].nbytes:
                        done -= views[0].nbytes
                        views.pop(0)
                    else:
                        views[0], done = views[0][done:], 0
        except BaseException:
            try:
                os.ftruncate(self._fd, offset)
            except OSError:
                pass  # then the torn bytes stay, and the next record starts after them
            self.size = os.fstat(self._fd).st_size
            raise
        self.size = offset + length
        return offset

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ----------------------------------------------------------------------------------------- event files
class _WholeObject:
    """A file-like object for TensorBoard's ``RecordWriter`` on an object store: every flush uploads the
    whole object again (object stores have no append; fsspec's ``"ab"`` on gcsfs silently overwrites, so
    TensorBoard's gfile would keep only the last write). Readers see the last flushed version, whole.

    Past ``ROLL`` bytes the object is final and the next flush starts ``<name>.0001`` (then ``.0002``, ...;
    they sort after it, as TensorBoard's loaders read a run's files), itself opening with a file-version
    event, so a long run re-uploads at most ``ROLL`` bytes per flush instead of its whole history."""

    ROLL = 8 << 20

    def __init__(self, url: str, on_roll: Callable[[str], None] = lambda url: None):
        self.url = self.base = url
        self._on_roll = on_roll
        self._part = 0
        self._buf = io.BytesIO()
        self._dirty = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self._buf.write(data)
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        put_object(self.url, self._buf.getvalue())
        self._dirty = False
        if self._buf.tell() >= self.ROLL:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.summary.writer.record_writer import RecordWriter

            self._part += 1
            self.url = f"{self.base}.{self._part:04d}"
            self._buf = io.BytesIO()
            RecordWriter(self._buf).write(_file_version_event(event_pb2).SerializeToString())
            self._dirty = True  # uploaded with the next flush, with what follows it
            self._on_roll(self.url)

    def close(self) -> None:
        self.flush()
        self.closed = True


def _file_version_event(event_pb2: Any) -> Any:
    return event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2",
                           source_metadata=event_pb2.SourceMetadata(writer=__name__))


def event_file_writer(logdir: str, max_queue: int = 10, flush_secs: int = 120, filename_suffix: str = "") -> Any:
    """TensorBoard's ``EventFileWriter`` for ``logdir``; on an object store, one whose flushes upload the
    whole event file through :func:`put_object` (errors name the URL, at the next write, flush or close)."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    if is_local(logdir):
        return EventFileWriter(logdir, max_queue, flush_secs, filename_suffix)
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer import event_file_writer as efw
    from tensorboard.summary.writer.record_writer import RecordWriter

    w = EventFileWriter.__new__(EventFileWriter)  # EventFileWriter.__init__, with a _WholeObject file
    w._logdir = logdir
    w._file_name = join_path(logdir, "events.out.tfevents.%010d.%s.%s.%s" % (
        time.time(), socket.gethostname(), os.getpid(), efw._global_uid.get())) + filename_suffix
    w._general_file_writer = _WholeObject(w._file_name, on_roll=lambda url: setattr(w, "_file_name", url))
    w._async_writer = efw._AsyncWriter(RecordWriter(w._general_file_writer), max_queue, flush_secs)
    w.add_event(_file_version_event(event_pb2))
    w.flush()
    return w
