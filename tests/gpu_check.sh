#!/usr/bin/env bash
# The CUDA checks of the distributed capture, as one script for a machine with a GPU (never run by `make test`:
# CI has no GPU; every test here also runs on the CPU with gloo there). From the repository root:
#   bash tests/gpu_check.sh            # needs torch with CUDA, transformers, tensorboard, pytest
# Optional: .gpu/whl/*.whl (google-crc32c for that Python) and .gpu/site (the MiniLM tokenizer files) when the
# machine lacks them. Each backend is tried: NCCL needs one GPU per rank, so on a one-GPU machine NCCL is
# expected to refuse two ranks ("Duplicate GPU"), and gloo then carries the same CUDA runs.
set -u
cd "$(dirname "$0")/.."
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/gpu-site .gpu/whl/*.whl
fi
export PYTHONPATH="/tmp/gpu-site:$PWD/.gpu/site:$PWD:$PWD/tests:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'gpus', torch.cuda.device_count(), 'nccl', torch.cuda.nccl.version())"
echo "== one process: CUDA capture equals CPU capture"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_distributed.py -k cuda 2>&1 | tail -4
for backend in nccl gloo; do
  echo "== two ranks on CUDA, backend $backend"
  DEVICE=cuda BACKEND=$backend timeout 400 python3 -m pytest -q -p no:cacheprovider tests/test_distributed.py \
    -k "plain_loop or tensor_and_pipeline or failing_on_one_rank" 2>&1 | grep -E "passed|failed|Error|error:|Duplicate" | tail -12
done
