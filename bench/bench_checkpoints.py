"""What consecutive checkpoints of one example share: how much smaller a run's records would be if each
chunk were stored relative to the same chunk of an earlier step (issue 21, item 4), measured, not built.

    .venv/bin/python bench/bench_checkpoints.py --demo            # logs the demo's MiniLM run first (~1-2 min)
    .venv/bin/python bench/bench_checkpoints.py RUN_DIR [--keyframe-every 4]

Reads every record of the run's asset files (``format.parse_record_header``), groups them by tag and example,
orders them by step and, per chunk family, compares the stored bytes with two delta codings (lossless: the
decoded values are the stored ones, bit for bit):

* **previous step**: against the same chunk of the example's previous logged step (the lower bound; a read
  would then need every earlier step: not allowed by "one ranged read per chunk or two");
* **keyframe**: against the nearest earlier keyframe (every ``--keyframe-every``-th logged step is stored
  whole), so a read is two ranged reads at most.

Codes (``attention``, ``overview``) are subtracted modulo 256; float16 q/k and float32 value norms are
XORed bit patterns, byte-shuffled (high bytes together), then zlib (level 6). A delta chunk is only counted
where it is smaller than the stored one.

With ``--pco`` (``pip install pcodec``) two more columns code the float chunks with Pcodec, a compressor
made for numeric arrays that gets near their entropy: the difference of the values' ordered bit patterns
(how many float16 / float32 steps each value moved since the base step), or the chunk alone for a keyframe
and an example's first step; codes as above. This bounds what any lossless coder of these deltas can do.

With ``--entropy`` two more columns give the float chunks' order-0 entropy against the previous step: the
bytes a coder needs that codes each value's move (in float16 / float32 steps) alone from one table for the
whole run, and from one table per exponent of the value it moved from; codes as above, and an example's first
step as stored.

With ``--grid BITS`` (e.g. ``0,1,2,3``) the q/k chunks are coded lossily instead, on a grid per row whose step
``2^(BITS - 10) ‖x_i‖ / sqrt(head_dim)`` keeps the row's error norm within ``2^(BITS - 11) ‖x_i‖``: at
BITS 0 the bound float16 rounding gives (a score moves by at most ``scaling 2^-10 |q_i| |k_j|``, the bound
the format documents), each further bit twice that. Each step's grid values are taken against the base step's
*reconstruction* (previous step, or keyframe), and the columns give the order-0 entropy of those integers (one
table per family for the run) plus a float16 step per row: q/k only, everything else as stored.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import zlib
from typing import Iterator, Optional

import numpy as np

from tensorboard_plugin_attention import format as fmt

CODES = ("attention", "overview", "pyramid", "pyramid_max", "topk_value")
FLOATS = {"queries": np.uint16, "keys": np.uint16, "value_norms": np.uint32}


def records(path: str) -> Iterator[tuple[fmt.AssetRecord, bytes]]:
    """Every record of one asset file, with the file's bytes."""
    raw = open(path, "rb").read()
    off = 0
    while off < len(raw):
        rec = fmt.parse_record_header(path, off, lambda _p, o, n: raw[o:o + n])
        end = rec.data_offset + max((e[0] + e[1] for _, e in leaves(rec.header["chunks"])), default=0)
        yield rec, raw
        off = end


def leaves(table, key: tuple = ()) -> Iterator[tuple[tuple, list]]:
    """(key, [offset, length, crc]) of every chunk of a chunk table."""
    if isinstance(table, list) and table and isinstance(table[0], int):
        yield key, table
    elif isinstance(table, list):
        for i, x in enumerate(table):
            yield from leaves(x, key + (i,))
    elif isinstance(table, dict):
        for k, x in table.items():
            yield from leaves(x, key + (k,))


def family(key: tuple) -> str:
    return str(key[1]) if len(key) > 1 and not isinstance(key[1], int) else str(key[0])


def delta_bytes(name: str, cur: bytes, base: Optional[bytes]) -> Optional[int]:
    """Bytes of ``cur`` coded against ``base`` (same chunk, earlier step), or None if they cannot be paired."""
    if base is None:
        return None
    if name in CODES:
        a, b = zlib.decompress(cur), zlib.decompress(base)
        if len(a) != len(b):
            return None
        d = np.frombuffer(a, np.uint8) - np.frombuffer(b, np.uint8)
        return len(zlib.compress(d.tobytes(), 6))
    if name in FLOATS and len(cur) == len(base):
        t = FLOATS[name]
        x = np.frombuffer(cur, t) ^ np.frombuffer(base, t)
        shuffled = x.view(np.uint8).reshape(-1, x.itemsize).T.copy()
        return len(zlib.compress(shuffled.tobytes(), 6))
    return None


def ordered(bits: np.ndarray) -> np.ndarray:
    """IEEE bit patterns (uint16 / uint32) as signed integers in the floats' order, one to one (-0 is -1):
    adjacent floats differ by 1."""
    sign = 1 << (8 * bits.itemsize - 1)
    b = bits.astype(np.int64)
    return np.where(b & sign, -(b & (sign - 1)) - 1, b)


def pco_bytes(name: str, cur: bytes, base: Optional[bytes]) -> int:
    """Bytes of ``cur`` with Pcodec: a float chunk's steps moved since ``base`` (or the chunk alone); codes as
    ``delta_bytes``."""
    from pcodec import ChunkConfig, standalone

    if name not in FLOATS:
        d = delta_bytes(name, cur, base)
        return len(cur) if d is None else min(d, len(cur))
    t = FLOATS[name]
    x = np.frombuffer(cur, t)
    if base is not None and len(base) == len(cur):
        moved = ordered(x) - ordered(np.frombuffer(base, t))
        arr = moved.astype(np.int16 if t == np.uint16 and np.abs(moved).max(initial=0) < 2 ** 15 else np.int64)
    else:
        arr = x.view(np.float16 if t == np.uint16 else np.float32)
    return min(len(cur), len(standalone.simple_compress(np.ascontiguousarray(arr), ChunkConfig(compression_level=8))))


def entropy_bytes(values: np.ndarray, context: np.ndarray) -> float:
    """Order-0 empirical entropy of ``values`` in bytes, with one symbol table per ``context`` value."""
    total = 0.0
    for c in np.unique(context):
        _, n = np.unique(values[context == c], return_counts=True)
        total -= float((n * np.log2(n / n.sum())).sum())
    return total / 8


def exponent(bits: np.ndarray) -> np.ndarray:
    """The exponent field of IEEE float16 / float32 bit patterns."""
    return (bits >> 10) & 31 if bits.dtype == np.uint16 else (bits >> 23) & 255


def grid_bytes(run_dir: str, keyframe_every: int, bits: float) -> dict:
    """q/k bytes on the norm-bounded grid (see the module's docstring): {"stored", "previous step", "keyframe"}."""
    by_example = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(run_dir, "plugins", "attention", "*"))):
        for rec, raw in records(path):
            by_example[(rec.header["tag"], rec.header["example"])].append((rec, raw))
    symbols: dict = {"previous step": collections.defaultdict(list), "keyframe": collections.defaultdict(list)}
    stored: collections.Counter = collections.Counter()
    rows: collections.Counter = collections.Counter()
    for rs in by_example.values():
        rs.sort(key=lambda x: x[0].header["step"])
        recon: dict = {"previous step": [], "keyframe": []}  # per step: chunk key -> reconstructed values
        for i, (rec, raw) in enumerate(rs):
            now: dict = {"previous step": {}, "keyframe": {}}
            for k, e in leaves(rec.header["chunks"]):
                name = family(k)
                if name not in ("queries", "keys"):
                    continue
                data = raw[rec.data_offset + e[0]:rec.data_offset + e[0] + e[1]]
                dim = rec.header["kinds"][k[0]]["head_dim"]
                x = np.frombuffer(data, "<f2").astype(np.float64).reshape(-1, dim)
                stored[name] += len(data)
                rows[name] += len(x)
                step = np.maximum(2.0 ** (bits - 10) * np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(dim), 1e-30)
                for mode, j in (("previous step", i - 1), ("keyframe", i - i % keyframe_every)):
                    base = recon[mode][j].get(k) if 0 <= j < i else None
                    base = 0.0 if base is None or base.shape != x.shape else base
                    r = np.round((x - base) / step)
                    now[mode][k] = base + r * step
                    symbols[mode][name].append(r.astype(np.int64).ravel())
            for mode in recon:
                recon[mode].append(now[mode])
    out = {"stored": stored}
    for mode, per in symbols.items():
        out[mode] = collections.Counter({name: entropy_bytes(np.concatenate(v), np.zeros(sum(map(len, v)), np.int8))
                                         + 2 * rows[name] for name, v in per.items()})
    return out


def measure(run_dir: str, keyframe_every: int, pco: bool = False, entropy: bool = False) -> dict:
    stored: collections.Counter = collections.Counter()
    prev_step: collections.Counter = collections.Counter()
    keyframe: collections.Counter = collections.Counter()
    prev_pco: collections.Counter = collections.Counter()
    key_pco: collections.Counter = collections.Counter()
    ent_first: collections.Counter = collections.Counter()  # float chunks without a previous step, as stored
    moves: dict = collections.defaultdict(list)  # float family -> [(moves, exponent of the base value)]
    by_example: dict = collections.defaultdict(list)
    files = sorted(glob.glob(os.path.join(run_dir, "plugins", "attention", "*")))
    for path in files:
        for rec, raw in records(path):
            by_example[(rec.header["tag"], rec.header["example"])].append((rec, raw))
    n_records = 0
    for rs in by_example.values():
        rs.sort(key=lambda x: x[0].header["step"])
        chunks = []
        for rec, raw in rs:
            chunks.append({k: raw[rec.data_offset + e[0]:rec.data_offset + e[0] + e[1]] for k, e in leaves(rec.header["chunks"])})
            head = len(json.dumps(rec.header, separators=(",", ":"))) + 16
            for c in (stored, prev_step, keyframe, prev_pco, key_pco):
                c["header"] += head
        n_records += len(rs)
        for i, cur in enumerate(chunks):
            key_i = i - i % keyframe_every
            for k, data in cur.items():
                name = family(k)
                stored[name] += len(data)
                d = delta_bytes(name, data, chunks[i - 1].get(k) if i else None)
                prev_step[name] += len(data) if d is None else min(d, len(data))
                d = delta_bytes(name, data, chunks[key_i].get(k) if key_i != i else None)
                keyframe[name] += len(data) if d is None else min(d, len(data))
                if entropy and name in FLOATS:
                    base = chunks[i - 1].get(k) if i else None
                    if base is None or len(base) != len(data):
                        ent_first[name] += len(data)
                    else:
                        t = FLOATS[name]
                        b = np.frombuffer(base, t)
                        moves[name].append((ordered(np.frombuffer(data, t)) - ordered(b), exponent(b)))
                if pco:
                    prev_pco[name] += pco_bytes(name, data, chunks[i - 1].get(k) if i else None)
                    key_pco[name] += pco_bytes(name, data, chunks[key_i].get(k) if key_i != i else None)
    m = {"files": files, "records": n_records, "examples": len(by_example), "stored": stored,
         "previous step": prev_step, "keyframe": keyframe}
    if pco:
        m.update({"previous step, pco": prev_pco, "keyframe, pco": key_pco})
    if entropy:
        flat, by_exp = collections.Counter(prev_step), collections.Counter(prev_step)  # codes: as zlib above
        for name in FLOATS:
            if name not in stored:
                continue
            mv = np.concatenate([a for a, _ in moves[name]]) if moves[name] else np.zeros(0, np.int64)
            ex = np.concatenate([e for _, e in moves[name]]) if moves[name] else np.zeros(0, np.int64)
            flat[name] = ent_first[name] + entropy_bytes(mv, np.zeros(len(mv), np.int8))
            by_exp[name] = ent_first[name] + entropy_bytes(mv, ex)
        m.update({"previous step, entropy": flat, "previous step, entropy per exponent": by_exp})
    return m


def table(m: dict, keyframe_every: int) -> str:
    names = sorted(m["stored"], key=lambda n: -m["stored"][n])
    cols = [c for c in ("previous step", "keyframe", "previous step, pco", "keyframe, pco", "previous step, entropy",
                        "previous step, entropy per exponent") if c in m]
    label = {c: c.replace("keyframe", f"keyframe every {keyframe_every}") for c in cols}
    out = ["| chunk family | stored | " + " | ".join(label[c] for c in cols) + " | share of stored |",
           "|---|---:|" + "---:|" * len(cols) + "---:|"]
    total = sum(m["stored"].values())
    for n in names + ["total"]:
        s = total if n == "total" else m["stored"][n]
        cells = []
        for c in cols:
            v = sum(m[c].values()) if n == "total" else m[c][n]
            cells.append(f"{v / 1e6:.2f} MB ({s / v:.2f}x)")
        out.append(f"| {n} | {s / 1e6:.2f} MB | " + " | ".join(cells) + f" | {s / total:.0%} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a run directory (holding plugins/attention/)")
    ap.add_argument("--demo", action="store_true", help="log the demo's MiniLM run into a temporary logdir first")
    ap.add_argument("--keyframe-every", type=int, default=4)
    ap.add_argument("--pco", action="store_true", help="also code the float chunks' deltas with Pcodec (pip install pcodec)")
    ap.add_argument("--entropy", action="store_true", help="also give the float chunks' moves' order-0 entropy")
    ap.add_argument("--grid", help="comma-separated BITS: q/k on a norm-bounded grid, 2^BITS x float16's score bound")
    args = ap.parse_args()
    run = args.run
    if args.demo:
        logdir = tempfile.mkdtemp(prefix="bench-checkpoints-")
        subprocess.run([sys.executable, "-m", "tensorboard_plugin_attention", "demo", "--logdir", logdir,
                        "--runs", "minilm"], check=True, stdout=subprocess.DEVNULL)
        run = os.path.join(logdir, "minilm")
    if not run:
        ap.error("give a run directory or --demo")
    m = measure(run, args.keyframe_every, args.pco, args.entropy)
    print(f"{m['records']} records of {m['examples']} examples in {len(m['files'])} asset file(s) of {run}\n")
    print(table(m, args.keyframe_every))
    if args.grid:
        rest = sum(m["keyframe"].values()) - sum(m["keyframe"][n] for n in ("queries", "keys"))
        total = sum(m["stored"].values())
        print(f"\n| q/k error norm bound | q/k stored | previous step (chained) | keyframe every {args.keyframe_every} "
              "| whole run, keyframes (the rest delta-coded as above) |\n|---|---:|---:|---:|---:|")
        for bits in [float(b) for b in args.grid.split(",")]:
            g = grid_bytes(run, args.keyframe_every, bits)
            s, p, k = (sum(g[c].values()) for c in ("stored", "previous step", "keyframe"))
            print(f"| 2^{bits - 11:g} ‖x‖ ({2 ** bits:.3g}x float16's) | {s / 1e6:.2f} MB | {p / 1e6:.2f} MB ({s / p:.2f}x) "
                  f"| {k / 1e6:.2f} MB ({s / k:.2f}x) | {(rest + k) / 1e6:.2f} MB ({total / (rest + k):.2f}x) |")


if __name__ == "__main__":
    main()
