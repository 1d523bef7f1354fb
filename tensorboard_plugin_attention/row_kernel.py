"""The fused path's per-row tail in C (``row_kernel.c``), compiled on first use; torch's operations otherwise.

After the score product of a chunk, torch's operations (max, softmax, pooling, block maxima, top-k) each pass
over the whole chunk; the C function visits each row once while it is in the core's cache (measured in
docs/performance.md, "Fused long-layer capture"). It needs a C compiler at run time (``$CC``, else ``cc``);
where there is none, or ``TBPA_ROW_KERNEL=0`` is set, :func:`load` returns None and the capture uses the
pure-torch tail, which gives the same record within float32 rounding (tests/test_long.py checks both).

The shared library is cached per source, compiler and CPU (``-march=native``) under
``$XDG_CACHE_HOME/tensorboard-plugin-attention`` (``~/.cache`` by default), written atomically so that ranks
compiling at once do not see each other's half-written files.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from typing import Optional

import torch

logger = logging.getLogger(__name__)

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "row_kernel.c")
# reassociated float sums and plain max, so that the loops vectorise; not -ffast-math (or
# -funsafe-math-optimizations): gcc then links start-up code that sets flush-to-zero for the whole process
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros", "-fassociative-math",
         "-freciprocal-math", "-ffinite-math-only", "-shared", "-fPIC"]
if platform.machine().lower() in ("x86_64", "amd64"):
    FLAGS.insert(2, "-mprefer-vector-width=512")  # where the CPU has AVX-512 (exp pass 0.37 -> 0.27 ns per weight)
BLOCK = 64  # keys per block of the top-k's candidate search (BLOCK in row_kernel.c)
ENV_SWITCH = "TBPA_ROW_KERNEL"  # "0" turns the C tail off (the pure-torch tail is used)

_lock = threading.Lock()
_loaded: dict[str, Optional[ctypes.CDLL]] = {}

_i64, _ptr = ctypes.c_int64, ctypes.c_void_p
_ARGTYPES = [_i64, _ptr, _i64, _i64, _i64, _i64,  # heads, scores, head stride, rows, keys, row stride
             _ptr, _ptr, _i64, _ptr, _ptr, _i64,  # lse, entropy, their head stride, top-k values, keys, stride
             _i64, _ptr, _ptr, _i64, _i64,  # k, pyramid, max pyramid, head stride, row stride
             _i64, _i64,  # keys per key bin, rows per query bin
             _ptr, _i64, _i64]  # distance (head stride as lse's), the first row's own key, the first key's index


def _cpu_key() -> str:
    """What -march=native depends on: the CPU's model and flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [l for l in f if l.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tensorboard-plugin-attention")


def _compile(compiler: str) -> Optional[str]:
    with open(SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(source + " ".join([compiler, *FLAGS]).encode() + _cpu_key().encode()).hexdigest()[:16]
    target = os.path.join(_cache_dir(), f"row_kernel-{key}.so")
    if os.path.exists(target):
        return target
    os.makedirs(_cache_dir(), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=_cache_dir())
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, "-o", tmp, SOURCE, "-lm"], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            logger.warning("row kernel not compiled (%s), using torch's operations: %s", compiler,
                           done.stderr.strip()[-500:])
            return None
        os.replace(tmp, target)  # atomic: a concurrent rank sees the whole file or none
        return target
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load() -> Optional[ctypes.CDLL]:
    """The compiled kernel, or None (no compiler, a failed build, or ``TBPA_ROW_KERNEL=0``)."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    compiler = os.environ.get("CC") or "cc"
    with _lock:
        if compiler not in _loaded:
            lib = None
            if shutil.which(compiler):
                try:
                    path = _compile(compiler)
                    if path:
                        lib = ctypes.CDLL(path)
                        lib.attention_rows.argtypes = _ARGTYPES
                        lib.attention_rows.restype = None
                except (OSError, subprocess.SubprocessError) as e:
                    logger.warning("row kernel not loaded, using torch's operations: %s", e)
                    lib = None
            _loaded[compiler] = lib
        return _loaded[compiler]


def attention_rows(lib: ctypes.CDLL, s: torch.Tensor, lse: torch.Tensor, entropy: torch.Tensor,
                   top_v: torch.Tensor, top_i: torch.Tensor,
                   pyramid: Optional[torch.Tensor], pyramid_max: Optional[torch.Tensor], width: int, rq: int, *,
                   distance: Optional[torch.Tensor] = None, diag0: int = 0, key0: int = 0) -> None:
    """Turn ``s`` (heads, r, mc) of scores into weights in place and fill each row's summaries.

    ``lse`` / ``entropy`` (heads, r) and ``top_v`` / ``top_i`` (heads, r, k: keys ``key0`` + their place in the
    chunk) are views of the layer's arrays; ``pyramid`` / ``pyramid_max`` (heads, r // rq, mc // width) the cells this
    chunk adds into (None: no pyramid here). ``distance`` (heads, r), strided as ``lse``, or None: per row
    ``sum_j p_ij |i - j|``, row ``i``'s own key at place ``diag0 + i`` of the chunk. float32 / int32 CPU
    tensors whose last dimension is contiguous.
    """
    heads, r, mc = s.shape
    assert s.dtype == torch.float32 and s.device.type == "cpu" and s.stride(2) == 1 and s.stride(0) == r * s.stride(1)
    for a in (lse, entropy):
        assert a.dtype == torch.float32 and a.stride(1) == 1 and a.shape == (heads, r)
    assert lse.stride(0) == entropy.stride(0)
    k = top_v.shape[2]
    assert top_v.stride() == top_i.stride() and top_v.stride()[1:] == (k, 1) and top_i.dtype == torch.int32
    if distance is not None:
        assert distance.dtype == torch.float32 and distance.shape == (heads, r) and distance.stride() == lse.stride()
    use_pyramid = pyramid is not None and width > 0 and rq > 0
    if use_pyramid:
        assert pyramid.stride() == pyramid_max.stride() and pyramid.stride(2) == 1
        assert pyramid.shape == (heads, r // rq, mc // width) and r % rq == 0 and mc % width == 0
    lib.attention_rows(heads, s.data_ptr(), s.stride(0), r, mc, s.stride(1),
                       lse.data_ptr(), entropy.data_ptr(), lse.stride(0), top_v.data_ptr(), top_i.data_ptr(),
                       top_v.stride(0), k,
                       pyramid.data_ptr() if use_pyramid else None, pyramid_max.data_ptr() if use_pyramid else None,
                       pyramid.stride(0) if use_pyramid else 0, pyramid.stride(1) if use_pyramid else 0,
                       width if use_pyramid else 0, rq if use_pyramid else 0,
                       None if distance is None else distance.data_ptr(), diag0, key0)
