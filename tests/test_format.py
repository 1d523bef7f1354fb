"""The format module: codec bounds, overview pooling, record framing, checksums, versions."""

import json
import os
import signal

import numpy as np
import pytest

from tensorboard_plugin_attention import format as fmt
from tensorboard_plugin_attention import http_io
from tensorboard_plugin_attention import storage
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


def test_codec_table_lookup_codes_as_the_thresholds_do():
    """The prefix table gives every value the code ``searchsorted`` over the thresholds gives: random weights,
    every threshold and its neighbours, 0, 1, values just outside [0, 1], NaN; any shape, 0-d included."""
    rng = np.random.default_rng(0)
    b = fmt._BOUNDS
    x = np.concatenate([rng.random(200_000) ** 8, rng.random(100_000), b, np.nextafter(b, 0), np.nextafter(b, 1),
                        [0.0, 1.0, -0.0, -1e-9, 1.0000001, 2.0, 1e-38, np.nan]]).astype(np.float32)
    codes = fmt.encode_attention(x[None, :])[0]
    tiny = x < fmt.LUT[1]  # dithered to 0 or 1 instead
    np.testing.assert_array_equal(codes[~tiny], np.searchsorted(b, x, side="right")[~tiny].astype(np.uint8))
    assert fmt.encode_attention(np.float32(0.5)).shape == () and fmt.encode_attention(np.float32(1.0)) == 255


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
        return storage.read_range(p, off, n)

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
    rec = fmt.parse_record_header(path, 4, storage.read_range)
    off = rec.data_offset + rec.chunk("encoder", "attention", 0, 0)[0]
    raw[off] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    rec = fmt.parse_record_header(path, 4, storage.read_range)
    with pytest.raises(fmt.FormatError, match="checksum"):
        fmt.read_chunk(rec, rec.chunk("encoder", "attention", 0, 0), storage.read_range)
    raw[20] ^= 0xFF  # inside the header
    open(path, "wb").write(bytes(raw))
    with pytest.raises(fmt.FormatError, match="checksum"):
        fmt.parse_record_header(path, 4, storage.read_range)
    with pytest.raises(fmt.FormatError, match="magic"):
        fmt.parse_record_header(path, 0, storage.read_range)
    with pytest.raises(fmt.FormatError, match="truncated"):
        fmt.parse_record_header(path, len(raw) - 3, storage.read_range)


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
    assert ok["version"] == FORMAT_VERSION and ok["asset"] == {"file": "f.attn", "offset": 0, "length": 1}
    with pytest.raises(fmt.FormatError, match="malformed"):  # a v1 payload without what readers need
        fmt.parse_index_payload(json.dumps({"version": 1, "asset": {"file": "f", "offset": 0, "length": 1}}).encode())


# ------------------------------------------------------------------------------- hardening (issue 10)
def _index_of(tmp_path) -> tuple:
    layers = [fmt.LayerArrays(softmax_rows(np.random.default_rng(0), (2, 3, 3)), info={})]
    header = {"version": FORMAT_VERSION, "tag": "t", "example": "0", "step": 1,
              "sequences": {"input": ["a", "b", "c"]}, "kinds": {"encoder": fmt.describe_kind(layers, "input", "input")}}
    return header, fmt.index_payload(header, "f.attn", 0, 1)


def test_index_payload_checksum_catches_bit_flips(tmp_path):
    """The Rust data server does not check event CRCs of records that parse: our own checksum must."""
    _, payload = _index_of(tmp_path)
    assert fmt.parse_index_payload(payload)["sequences"]["input"] == ["a", "b", "c"]
    at = payload.index(b'"b"') + 1
    flipped = payload[:at] + bytes([payload[at] ^ 0x01]) + payload[at + 1:]  # "b" -> "c": still valid JSON
    assert json.loads(flipped)["sequences"]["input"] == ["a", "c", "c"]
    with pytest.raises(fmt.FormatError, match="checksum mismatch"):
        fmt.parse_index_payload(flipped)
    unsigned = json.dumps(json.loads(payload)).encode()  # v2 without its checksum where it belongs
    with pytest.raises(fmt.FormatError, match="checksum"):
        fmt.parse_index_payload(unsigned.replace(b', "index_crc32c"', b', "x"'))
    # a version 1 payload (written before the checksum) is still read
    v1 = {k: v for k, v in json.loads(payload).items() if k != fmt.INDEX_CRC_KEY}
    v1["version"] = 1
    assert fmt.parse_index_payload(json.dumps(v1).encode())["version"] == 1


def test_version_true_is_not_version_1():
    for bad in (True, False, 1.0, "1", None, 0):
        with pytest.raises(UnsupportedVersionError, match="invalid format version"):
            fmt.upgrade_header({"version": bad})


def test_counts_are_bounded(tmp_path):
    header, payload = _index_of(tmp_path)
    index = fmt.parse_index_payload(payload)
    enc = index["kinds"]["encoder"]
    for field_, value in (("layers", 10**9), ("heads", 10**9), ("q_len", 4), ("k_len", 2**40)):
        bad = dict(index, kinds={"encoder": dict(enc, **{field_: value})})
        with pytest.raises(fmt.FormatError, match=field_):
            fmt.parse_index_payload(fmt.encode_index(bad))


def test_crafted_lengths_are_bounded_by_the_file(tmp_path):
    """A chunk length of 2**40 with a valid CRC (a crafted header) is refused as truncation, not allocated;
    a chunk that inflates past its shape (a zlib bomb) is refused without inflating it."""
    path, _ = _record(tmp_path)
    rec = fmt.parse_record_header(path, 4, storage.read_range)
    off, length, crc = rec.chunk("encoder", "attention", 0, 0)
    rec.header["chunks"]["encoder"]["attention"][0][0] = [off, 2**40, crc]
    with pytest.raises(fmt.FormatError, match="truncated"):
        fmt.read_chunk(rec, rec.chunk("encoder", "attention", 0, 0), storage.read_range)
    assert storage.read_range(path, 2**40, 2**40) == b""
    bomb = fmt.compress_chunk(bytes(1 << 24))
    with pytest.raises(fmt.FormatError, match="expected 16"):
        fmt.decode_codes(bomb, (4, 4))
    with pytest.raises(fmt.FormatError):
        http_io.splice_gzip([bomb], [16])
    raw = bytearray(open(path, "rb").read())  # a header length of 2**31 with a valid frame
    raw[4 + 8:4 + 12] = (2**31).to_bytes(4, "little")
    open(path, "wb").write(bytes(raw))
    with pytest.raises(fmt.FormatError, match="larger than any writer makes"):
        fmt.parse_record_header(path, 4, storage.read_range)


def test_record_mismatch_names_the_difference(tmp_path):
    header, payload = _index_of(tmp_path)
    index = fmt.parse_index_payload(payload)
    assert fmt.record_mismatch(index, dict(header, chunks={})) is None
    assert "step" in fmt.record_mismatch(index, dict(header, step=2, chunks={}))
    assert "sequences" in fmt.record_mismatch(index, dict(header, sequences={"input": ["a", "b", "x"]}, chunks={}))


_SHORT_WRITE = r'''
import os, resource, signal, sys
import numpy as np
from tensorboard_plugin_attention import storage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE fails with EFBIG instead
run = sys.argv[1]
f = storage.AssetFile(run, "a.attn")
records = [bytes([i]) * 3000 for i in range(4)]
assert f.append(records[0]) == 0
resource.setrlimit(resource.RLIMIT_FSIZE, (4000, resource.RLIM_INFINITY))  # the next record is cut short
try:
    f.append(records[1])
    raise SystemExit("no error")
except OSError as e:
    print("error", e.errno)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
offsets = [f.append(records[2]), f.append(records[3])]
f.close()
data = open(f.path, "rb").read()
print("offsets", *offsets, "size", len(data))
for off, rec in zip(offsets, records[2:]):
    assert data[off:off + len(rec)] == rec, off
'''


def test_asset_file_resyncs_after_a_short_write(tmp_path):
    """After a write that fails half-way (file-size limit, disk full), the torn bytes are cut off and the
    next records are at the offsets returned for them (before the fix: 3000 bytes off, serving another
    record's bytes)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _SHORT_WRITE, str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "error 27" in out.stdout  # EFBIG
    assert "offsets 3000 6000 size 9000" in out.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_codes_records_with_its_own_threads():
    """The chunk coders are started once per process; a forked child (which inherits the pool object but
    none of its threads) gets its own pool instead of waiting forever on the parent's."""
    parent = fmt._encoder_pool()
    assert parent.submit(lambda: 1).result() == 1
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its pool is new and runs work (alarm: no hang either way)
        signal.alarm(20)
        child = fmt._encoder_pool()
        os._exit(0 if child is not parent and child.submit(lambda: 2).result(timeout=10) == 2 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fmt._encoder_pool() is parent
