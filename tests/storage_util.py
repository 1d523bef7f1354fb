"""Object-store servers for the storage tests, on 127.0.0.1 free ports, started and stopped by the tests.

* ``MotoServer``: moto's S3 server (``moto[server]``) in a subprocess; ``env`` is what a client needs
  (``S3_ENDPOINT`` for TensorBoard's gfile and ours, ``AWS_ENDPOINT_URL`` for boto3, dummy credentials).
* ``GcsEmulator``: ``gcp-storage-emulator`` in memory; ``env`` sets ``STORAGE_EMULATOR_HOST`` for gcsfs.
* ``s3`` / ``gcs``: session fixtures running one of each (below).
* ``FaultProxy``: a TCP proxy in front of a server that passes bytes through until a request line matches,
  then resets the connection or stalls mid-body (to fail an upload, or to kill a writer while it uploads).
"""

from __future__ import annotations

import atexit
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Optional

import pytest

from conftest import free_port

BIN = os.path.dirname(sys.executable)


class _Server:
    cmd: list = []
    probe = "/"

    def __init__(self) -> None:
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self._log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "_Server":
        self.port = free_port()
        cmd = [c.format(port=self.port) for c in self.cmd]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(self.url + self.probe, timeout=2).read()
                return self
            except urllib.error.HTTPError:
                return self  # it answers
            except OSError:
                time.sleep(0.1)
        self.stop()
        self._log.seek(0)
        raise RuntimeError(f"{' '.join(cmd)} did not start:\n{self._log.read().decode(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class MotoServer(_Server):
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"]

    def env(self, endpoint: Optional[str] = None) -> dict:
        endpoint = endpoint or self.url
        return {"S3_ENDPOINT": endpoint, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                                              aws_secret_access_key="testing", region_name="us-east-1")

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


class GcsEmulator(_Server):
    cmd = [os.path.join(BIN, "gcp-storage-emulator"), "start", "--host=127.0.0.1", "--port={port}", "--in-memory"]
    probe = "/storage/v1/b"

    def env(self) -> dict:
        # gcsfs >= 2026 probes a bucket's type through the storage-control gRPC API, which no emulator serves
        return {"STORAGE_EMULATOR_HOST": self.url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    def bucket(self, name: str) -> str:
        req = urllib.request.Request(self.url + "/storage/v1/b?project=test", method="POST",
                                     data=('{"name": "%s"}' % name).encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        return name


_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(?:GET|PUT|HEAD|POST|DELETE) /[^ ]* HTTP/1\.[01]\r\n")


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; the ``n``-th request (from 1) whose request line matches
    ``pattern`` is reset (``mode="reset"``: every later match too) or stalls after half of its bytes
    (``mode="stall"``: ``stalled`` is set, nothing more is forwarded; the client's death then closes it)."""

    def __init__(self, upstream_port: int, pattern: bytes, mode: str = "reset", n: int = 1):
        self.upstream_port, self.pattern, self.mode, self.n = upstream_port, re.compile(pattern), mode, n
        self.matches = 0
        self.requests = 0  # HTTP requests seen (request lines), and bytes sent back, for the benchmark
        self.bytes_down = 0
        self.stalled = threading.Event()
        self._lock = threading.Lock()
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, inspect: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                with self._lock:
                    if inspect:
                        self.requests += len(_REQUEST_LINE.findall(data))
                    else:
                        self.bytes_down += len(data)
                if inspect and self.pattern.search(data):
                    with self._lock:
                        self.matches += 1
                        hit = self.matches >= self.n
                    if hit and self.mode == "reset":
                        break
                    if hit and self.mode == "stall":
                        m = re.search(rb"content-length: *(\d+)", data, re.I)
                        budget = data.find(b"\r\n\r\n") + 4 + (int(m.group(1)) // 2 if m else 0)
                        while data:  # headers and half of the body (it may come in later pieces) ...
                            dst.sendall(data[:budget])
                            budget -= len(data[:budget])
                            if budget <= 0:
                                break
                            data = src.recv(1 << 16)
                        self.stalled.set()
                        while src.recv(1 << 16):  # ... then nothing more, until the client dies
                            pass
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._srv.close()


# Session fixtures (import them into a test module: ``from storage_util import s3``). One server of each kind
# per session, however many modules import the fixture (pytest makes one fixture per importing module), because
# TensorBoard's gfile reads S3_ENDPOINT once, when first imported: in-process readers must keep one endpoint.
# The server's environment is set for the rest of the session; "bucket" exists; stopped at exit.
_running: dict = {}


def _shared(cls) -> _Server:
    server = _running.get(cls)
    if server is None:
        server = _running[cls] = cls().start()
        atexit.register(server.stop)
        os.environ.update(server.env())
        server.bucket("bucket")
    return server


@pytest.fixture(scope="session")
def s3() -> MotoServer:
    return _shared(MotoServer)


@pytest.fixture(scope="session")
def gcs() -> GcsEmulator:
    return _shared(GcsEmulator)
