#!/usr/bin/env bash
# GPU benchmark of the training engine (< 150 s on an H100). Run from the repository root:
#     PYTHONPATH=. bash benchmarks/gpu_throughput.sh
# Writes into "$OUT" (default benchmarks/results): throughput_cuda.{json,md,png} (fp32 and
# bf16 steps as a fraction of the GPU's own fp32 matmul rate, samples/s), time_to_quality_cuda.*
# (held-out faithfulness against time, fp32 vs bf16) and test_engine_cuda.txt.
set -uo pipefail
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-.}"
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv; python -c \
  "import torch, sklearn; print('torch', torch.__version__, 'sklearn', sklearn.__version__)"; } \
  > "$OUT/gpu_info.txt" 2>&1
timeout 45 python benchmarks/throughput.py --device cuda --rounds 4 --out "$OUT" \
  --name throughput_cuda --variants "samples pull-away" "samples, gram" \
  > "$OUT/throughput_cuda.log" 2>&1 || echo "throughput: exit $?" >> "$OUT/gpu_info.txt"
timeout 75 python benchmarks/time_to_quality.py --device cuda --n-train 50000 --n-test 5000 \
  --batches 1024 256 --precisions float32 bf16 --max-iter 30 --collapse-retries 0 --no-baselines --out "$OUT" \
  --name time_to_quality_cuda > "$OUT/time_to_quality_cuda.log" 2>&1 \
  || echo "time_to_quality: exit $?" >> "$OUT/gpu_info.txt"
timeout 20 python -m pytest -q -p no:cacheprovider tests/test_engine.py -k 'not compile' \
  > "$OUT/test_engine_cuda.txt" 2>&1 || echo "test_engine: exit $?" >> "$OUT/gpu_info.txt"
cat "$OUT/gpu_info.txt" "$OUT"/throughput_cuda.md "$OUT"/throughput_cuda_vs_cpu.md \
  "$OUT"/time_to_quality_cuda.md 2>/dev/null
tail -3 "$OUT/test_engine_cuda.txt"
