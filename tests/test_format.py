"""The format module: codec bounds, overview pooling, record framing, checksums, versions."""

import json

import numpy as np
import pytest

from tensorboard_plugin_attention import format as fmt
from tensorboard_plugin_attention.metadata import FORMAT_VERSION, UnsupportedVersionError


def softmax_rows(rng, shape, temperature=3.0):
    x = rng.normal(size=shape) * temperature
    a = np.exp(x - x.max(-1, keepdims=True))
    return (a / a.sum(-1, keepdims=True)).astype(np.float32)


def check_bounds(original, decoded):
    """The fidelity bounds of docs/format.md."""
    k = original.shape[-1]
    assert np.abs(decoded - original).max() <= 0.004
    big = original >= 1.0 / k
    assert (np.abs(decoded - original)[big] / original[big]).max() <= 0.05
    assert np.abs(decoded.sum(-1, dtype=np.float64) - original.sum(-1, dtype=np.float64)).max() <= 0.03


@pytest.mark.parametrize("k", [1, 7, 128, 512])
def test_codec_bounds_on_softmax_rows(k):
    a = softmax_rows(np.random.default_rng(k), (4, 16 if k > 1 else 1, k))
    check_bounds(a, fmt.decode_attention(fmt.encode_attention(a)))


@pytest.mark.parametrize("k", [64, 512, 2048])
def test_codec_bounds_on_uniform_and_peaked_rows(k):
    uniform = np.full((1, 2, k), 1.0 / k, np.float32)
    check_bounds(uniform, fmt.decode_attention(fmt.encode_attention(uniform)))
    # one dominant key plus a long tail below the smallest code: dithering keeps the tail's mass
    peaked = np.full((1, 2, k), 0.3 / (k - 1), np.float32)
    peaked[..., 0] = 0.7
    check_bounds(peaked, fmt.decode_attention(fmt.encode_attention(peaked)))


def test_codec_exact_endpoints_and_monotonic_lut():
    assert fmt.LUT[0] == 0.0 and fmt.LUT[255] == 1.0
    assert np.all(np.diff(fmt.LUT) > 0)
    codes = fmt.encode_attention(np.array([0.0, 1.0, 0.5], np.float32))
    assert codes[0] == 0 and codes[1] == 255 and abs(fmt.LUT[codes[2]] - 0.5) <= 0.004


def test_pool_overview_keeps_rows_stochastic_and_bins():
    a = softmax_rows(np.random.default_rng(0), (3, 130, 200))
    p = fmt.pool_overview(a)
    assert p.shape == (3, 64, 64)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    # first bin of queries is tokens 0..2 (130 * 64 // 130 ...) averaged; first key bin summed
    qbin = np.arange(130) * 64 // 130
    kbin = np.arange(200) * 64 // 200
    expected = a[:, qbin == 0][:, :, kbin == 0].sum(-1).mean(-1)
    np.testing.assert_allclose(p[:, 0, 0], expected, rtol=1e-5)
    small = softmax_rows(np.random.default_rng(1), (2, 5, 9))
    np.testing.assert_allclose(fmt.pool_overview(small), small, rtol=1e-6)


def _record(tmp_path, with_qk=True):
    rng = np.random.default_rng(0)
    layers = [fmt.LayerArrays(softmax_rows(rng, (2, 4, 4)),
                              rng.normal(size=(2, 4, 3)).astype(np.float32) if with_qk else None,
                              rng.normal(size=(2, 4, 3)).astype(np.float32) if with_qk else None,
                              {"scaling": 0.5}) for _ in range(3)]
    header = {"version": FORMAT_VERSION, "kinds": {"encoder": fmt.describe_kind(layers, "input", "input")}}
    data = fmt.encode_record(header, {"encoder": layers})
    path = tmp_path / "x.attn"
    path.write_bytes(b"junk" + data)
    return str(path), layers


def test_record_round_trip_reads_single_chunks(tmp_path):
    path, layers = _record(tmp_path)
    reads = []

    def read_range(p, off, n):
        reads.append(n)
        return fmt.read_range(p, off, n)

    rec = fmt.parse_record_header(path, 4, read_range)
    reads.clear()
    codes = fmt.decode_codes(fmt.read_chunk(rec, rec.chunk("encoder", "attention", 2, 1), read_range), (4, 4))
    assert np.abs(fmt.decode_attention(codes) - layers[2].attention[1]).max() <= 0.004
    q = fmt.decode_f16(fmt.read_chunk(rec, rec.chunk("encoder", "queries", 1, 0), read_range), (4, 3))
    np.testing.assert_allclose(q, layers[1].queries[0], rtol=1e-3, atol=1e-3)
    # one chunk each: nothing else of the record was read
    assert len(reads) == 2 and sum(reads) < 100


def test_corruption_is_detected(tmp_path):
    path, _ = _record(tmp_path)
    raw = bytearray(open(path, "rb").read())
    rec = fmt.parse_record_header(path, 4, fmt.read_range)
    off = rec.data_offset + rec.chunk("encoder", "attention", 0, 0)[0]
    raw[off] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    rec = fmt.parse_record_header(path, 4, fmt.read_range)
    with pytest.raises(fmt.FormatError, match="checksum"):
        fmt.read_chunk(rec, rec.chunk("encoder", "attention", 0, 0), fmt.read_range)
    raw[20] ^= 0xFF  # inside the header
    open(path, "wb").write(bytes(raw))
    with pytest.raises(fmt.FormatError, match="checksum"):
        fmt.parse_record_header(path, 4, fmt.read_range)
    with pytest.raises(fmt.FormatError, match="magic"):
        fmt.parse_record_header(path, 0, fmt.read_range)
    with pytest.raises(fmt.FormatError, match="truncated"):
        fmt.parse_record_header(path, len(raw) - 3, fmt.read_range)


def test_unknown_version_is_refused_with_a_clear_message():
    payload = json.dumps({"version": FORMAT_VERSION + 1, "asset": {"file": "f", "offset": 0, "length": 1}})
    with pytest.raises(UnsupportedVersionError, match="upgrade"):
        fmt.parse_index_payload(payload.encode())
    with pytest.raises(fmt.FormatError):
        fmt.parse_index_payload(b"\xff not json")
    layers = [fmt.LayerArrays(softmax_rows(np.random.default_rng(0), (2, 3, 3)), info={})]
    header = {"version": FORMAT_VERSION, "sequences": {"input": ["a", "b", "c"]},
              "kinds": {"encoder": fmt.describe_kind(layers, "input", "input")}}
    ok = fmt.parse_index_payload(fmt.index_payload(header, "f.attn", 0, 1))
    assert ok["version"] == 1 and ok["asset"] == {"file": "f.attn", "offset": 0, "length": 1}
    with pytest.raises(fmt.FormatError, match="malformed"):  # a v1 payload without what readers need
        fmt.parse_index_payload(json.dumps({"version": 1, "asset": {"file": "f", "offset": 0, "length": 1}}).encode())
