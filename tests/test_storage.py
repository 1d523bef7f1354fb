"""storage.py: local append-only files, and object stores against real S3 and GCS APIs on 127.0.0.1 (moto's
server, gcp-storage-emulator; started and stopped here). End-to-end with TensorBoard: test_storage_e2e.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import numpy as np
import pytest

from conftest import write_attention_run
from storage_util import FaultProxy, gcs, s3  # noqa: F401 (session fixtures)

from tensorboard_plugin_attention import reader, storage
from tensorboard_plugin_attention.reader import read_attention
from tensorboard_plugin_attention.summary import AttentionWriter, BackgroundWriteError, log_attention

ASSET = re.compile(r"\d+\.[^/]+\.\d+\.[0-9a-f]{8}\.\d+\.attn$")  # <time>.<host>.<pid>.<random>.<n>.attn


def _same(a, b):
    assert [(e.run, e.tag, e.example, e.step) for e in a] == [(e.run, e.tag, e.example, e.step) for e in b]
    for x, y in zip(a, b):
        where = ("wall_time", "asset", "index_crc32c")  # when and where it was written differ, nothing else
        assert {k: v for k, v in x.header.items() if k not in where} == \
            {k: v for k, v in y.header.items() if k not in where}
        for d in ("attention", "queries", "keys"):
            assert getattr(x, d).keys() == getattr(y, d).keys()
            for kind in getattr(x, d):
                np.testing.assert_array_equal(getattr(x, d)[kind], getattr(y, d)[kind])


def _unique() -> str:
    return uuid.uuid4().hex[:8]


# ------------------------------------------------------------------------------------------------ local
def test_local_paths_keep_one_append_only_file(tmp_path):
    f = storage.AssetFile(str(tmp_path), "a.attn")
    assert f.write(b"x" * 10) == ("a.attn", 0)
    assert f.write(b"y" * 5) == ("a.attn", 10)
    f.close()
    assert storage.read_range(str(tmp_path / "plugins" / "attention" / "a.attn"), 8, 4) == b"xxyy"


def test_a_record_in_pieces_is_written_whole_and_in_order(tmp_path):
    """A record handed over as its pieces (``format.encode_record_parts``: no joined copy) lands as their
    concatenation, across more pieces than one ``writev`` takes and with empty ones among them."""
    pieces = [bytes([i % 251]) * (i % 7) for i in range(3000)]
    f = storage.AssetFile(str(tmp_path), "a.attn")
    assert f.write(b"head") == ("a.attn", 0)
    assert f.write(pieces) == ("a.attn", 4)
    assert f.write([b"tail"]) == ("a.attn", 4 + sum(map(len, pieces)))
    f.close()
    with open(tmp_path / "plugins" / "attention" / "a.attn", "rb") as fh:
        assert fh.read() == b"head" + b"".join(pieces) + b"tail"


BLOCK_REMOTE = r'''
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("boto3", "botocore", "s3fs", "gcsfs", "fsspec", "aiohttp"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import numpy as np
from tensorboard_plugin_attention import AttentionWriter, read_attention
from tensorboard_plugin_attention.plugin import AttentionLoader
a = [np.full((2, 3, 3), 1 / 3, np.float32)]
with AttentionWriter(sys.argv[1] + "/run") as w:
    w.add_attention("probes", a, ["a", "b", "c"], 0)
got = read_attention(sys.argv[1], strict=True)
assert [e.step for e in got] == [0], got
'''


def test_local_logdirs_need_no_storage_library(tmp_path):
    """Nothing remote is imported for a local logdir: writing and reading work with boto3, fsspec and the
    rest unimportable (the extras are optional)."""
    r = subprocess.run([sys.executable, "-c", BLOCK_REMOTE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


# ------------------------------------------------------------------------------------------------- S3
def test_s3_run_reads_as_the_same_run_logged_locally(s3, tmp_path):
    """AttentionWriter to s3:// and read_attention from it: the same arrays as a local run of the same
    logging; one immutable object per record, named so that no two writers collide."""
    prefix = f"unit-{_unique()}"
    for logdir in (str(tmp_path / "x"), f"s3://bucket/{prefix}/x"):
        write_attention_run(logdir, steps=(0, 1, 2), examples=("0", "1"), layers=2, heads=2, tokens=6)
    _same(read_attention(f"s3://bucket/{prefix}", strict=True), read_attention(str(tmp_path), strict=True))
    assets = [k for k in s3.keys("bucket", prefix) if "/plugins/attention/" in k]
    assert len(assets) == 6 and all(ASSET.search(k) for k in assets), assets
    assert len({k.rsplit(".", 2)[0] for k in assets}) == 1  # one writer: one stem, numbered records


def test_s3_reads_are_ranged_and_bounded(s3, tmp_path):
    """One ranged request for a record's frame and header, one for a whole layer (all heads), one for the
    overview; cached afterwards; never a whole object for one head."""
    prefix = f"unit-{_unique()}"
    write_attention_run(f"s3://bucket/{prefix}/x", steps=(0,), layers=3, heads=4, tokens=200, qk=False, seed=1)
    runs = _runs(f"s3://bucket/{prefix}")
    (entry,) = runs["x"].entries.values()
    store = reader.RecordStore(reader.RunDirs(f"s3://bucket/{prefix}"))
    size = s3.client().head_object(Bucket="bucket", Key=store.asset_path(entry)[len("s3://bucket/"):])["ContentLength"]

    def cost(fn):
        before = dict(storage.STATS)
        fn()
        return storage.STATS["requests"] - before["requests"], storage.STATS["bytes"] - before["bytes"]

    assert cost(lambda: store.record(entry))[0] == 1  # frame + header: one block
    n, nbytes = cost(lambda: store.attention_codes(entry, "encoder", 1, 2))  # one head
    assert n == 1 and nbytes < size / 4, (n, nbytes, size)
    assert cost(lambda: store.attention_codes(entry, "encoder", 1, 2)) == (0, 0)  # cached
    n, nbytes = cost(lambda: store.attention_codes(entry, "encoder", 2))  # a layer: one request
    assert n == 1 and nbytes < size / 2
    assert cost(lambda: store.overview_codes(entry, "encoder"))[0] == 1
    # lengths past the object's end come back short (the reader calls that truncation), never allocated
    url = store.asset_path(entry)
    assert storage.read_range(url, size - 10, 1 << 40) == storage.read_range(url, size - 10, 10)
    assert storage.read_range(url, size + 5, 100) == b""


def _runs(logdir):
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"attention": 0})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    return reader.IndexCache(data_provider.MultiplexerDataProvider(mux, logdir)).get(context.RequestContext())


def test_s3_failed_upload_raises_with_the_url_and_indexes_nothing(s3, monkeypatch):
    """A failed upload (the connection reset on every try) is raised at flush() with the object's URL and
    the storage library's error; no index record points at it; the steps before and after it are read."""
    proxy = FaultProxy(s3.port, rb"PUT [^ ]*\.attn", mode="reset", n=2)  # the second record's upload fails
    monkeypatch.setenv("S3_ENDPOINT", proxy.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    prefix = f"unit-{_unique()}"
    att = [np.full((2, 3, 3), 1 / 3, np.float32)]
    w = AttentionWriter(f"s3://bucket/{prefix}/x")
    log_attention(w, "probes", att, ["a", "b", "c"], 0)
    w.flush()
    log_attention(w, "probes", att, ["a", "b", "c"], 1)
    with pytest.raises(BackgroundWriteError) as err:
        w.flush()
    msg = str(err.value)
    assert f"s3://bucket/{prefix}/x/plugins/attention/" in msg and ".1.attn" in msg and "step 1" in msg, msg
    assert "Connection" in msg or "connection" in msg, msg
    proxy.close()
    monkeypatch.setenv("S3_ENDPOINT", s3.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
    w.close()
    assert [e.step for e in read_attention(f"s3://bucket/{prefix}", strict=True)] == [0]


def test_s3_append_only_layout_uploaded_as_is_is_read(s3, tmp_path):
    """A logdir written locally (one append-only asset file) and copied to the bucket reads the same: the
    reader reads both layouts (the index records say where each record is)."""
    write_attention_run(str(tmp_path / "x"), steps=(0, 1, 2), layers=2, heads=2, tokens=5)
    prefix = f"copied-{_unique()}"
    client = s3.client()
    for root, _, files in os.walk(tmp_path):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), tmp_path)
            client.upload_file(os.path.join(root, f), "bucket", f"{prefix}/{rel}")
    assert sum(k.endswith(".attn") for k in s3.keys("bucket", prefix)) == 1
    _same(read_attention(f"s3://bucket/{prefix}", strict=True), read_attention(str(tmp_path), strict=True))


def test_summary_writer_on_s3(s3, tmp_path):
    """log_attention through torch's SummaryWriter, which writes its own event files to s3:// (gfile)."""
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    prefix = f"unit-{_unique()}"
    att = [np.full((2, 4, 4), 0.25, np.float32)]
    w = torch_tb.SummaryWriter(f"s3://bucket/{prefix}/x")
    for step in range(3):
        log_attention(w, "probes", att, list("abcd"), step)
        w.add_scalar("loss", 1.0 / (step + 1), step)
    w.close()
    assert [e.step for e in read_attention(f"s3://bucket/{prefix}", strict=True)] == [0, 1, 2]


# ------------------------------------------------------------------------------------------------ GCS
def test_gcs_run_reads_as_the_same_run_logged_locally(gcs, tmp_path):
    prefix = f"unit-{_unique()}"
    for logdir in (str(tmp_path / "x"), f"gs://bucket/{prefix}/x"):
        write_attention_run(logdir, steps=(0, 1), examples=("0", "1"), layers=2, heads=2, tokens=6)
    _same(read_attention(f"gs://bucket/{prefix}", strict=True), read_attention(str(tmp_path), strict=True))
    import fsspec

    fs = fsspec.filesystem("gs", skip_instance_cache=True)
    assets = fs.find(f"bucket/{prefix}/x/plugins/attention")
    assert len(assets) == 4 and all(ASSET.search(k) for k in assets), assets
    url, size = "gs://" + assets[0], fs.size(assets[0])
    assert storage.read_range(url, size - 10, 1 << 40) == storage.read_range(url, size - 10, 10)  # bounded
    assert len(storage.read_range(url, 0, size + 100)) == size


def test_s3_writer_warns_before_a_step_the_fast_loader_would_drop(s3, caplog):
    """A remote run's event files are read once, at a writer's first record: a new writer (a resumed
    training) logging step 2 where steps up to 4 already are is warned, as on a local disk (docs/writers.md)."""
    prefix = f"unit-{_unique()}"
    write_attention_run(f"s3://bucket/{prefix}/x", steps=range(5), layers=1, heads=1, tokens=3)
    with caplog.at_level("WARNING", logger="tensorboard_plugin_attention.summary"):
        with AttentionWriter(f"s3://bucket/{prefix}/x") as w:
            log_attention(w, "probes", [np.full((1, 3, 3), 1 / 3, np.float32)], ["a", "b", "c"], 2, example="0")
    assert "step 4 of the same tag is already in run" in caplog.text, caplog.text
    from tensorboard_plugin_attention.integrations.backfill import _check_no_purge

    with pytest.raises(ValueError, match="already has attention under tag 'probes' at steps 3, 4"):
        _check_no_purge(f"s3://bucket/{prefix}/x", "probes", [2])


def test_s3_event_files_roll_over_instead_of_growing(s3, monkeypatch):
    """Past a size, an event file on an object store is final and the writer goes on in <name>.0001, ...
    (each opening with a file-version event): flushes stop re-uploading the whole history; every step reads."""
    monkeypatch.setattr(storage._WholeObject, "ROLL", 3000)
    prefix = f"unit-{_unique()}"
    w = AttentionWriter(f"s3://bucket/{prefix}/x")
    for step in range(12):
        log_attention(w, "probes", [np.full((1, 3, 3), 1 / 3, np.float32)], ["a", "b", "c"], step)
        w.flush()
    w.close()
    events = [k for k in s3.keys("bucket", f"{prefix}/x/") if "tfevents" in k]
    assert len(events) >= 3 and all(k.startswith(events[0]) for k in events), events
    sizes = [s3.client().head_object(Bucket="bucket", Key=k)["ContentLength"] for k in events]
    assert max(sizes) < 3000 + 4000, sizes
    assert [e.step for e in read_attention(f"s3://bucket/{prefix}", strict=True)] == list(range(12))
