"""Package hygiene: TensorBoard imports us at start-up, so viewing must not pull in torch/transformers."""

import subprocess
import sys


def test_import_and_viewing_modules_load_no_torch():
    code = (
        "import sys\n"
        "import tensorboard_plugin_attention as t\n"
        "from tensorboard_plugin_attention import plugin, reader, summary, format, metrics, metadata\n"
        "t.read_attention, t.AttentionWriter, t.log_attention\n"
        "bad = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout}"


def test_public_api_is_lazy_and_complete():
    import tensorboard_plugin_attention as t

    assert set(t.__all__) == {"capture_attention", "AttentionWriter", "log_attention", "AttentionCallback",
                              "AttentionLogger", "read_attention"}
    assert callable(t.AttentionWriter) and callable(t.read_attention)


def test_entry_point_registered():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="tensorboard_plugins") if ep.name == "attention"]
    assert eps and eps[0].value == "tensorboard_plugin_attention.plugin:AttentionLoader"
