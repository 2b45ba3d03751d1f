#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run of under 8 minutes on one GPU; prints every figure and exits
# non-zero when any check fails (each is run, then the failures are listed; nothing is skipped silently).
#   1. the CUDA tests (pytest -m gpu: skipped tests count as failures here, not as passes)
#   2. train + evaluate on the bundled model with --device cuda: fp16 and bf16 autocast, and --dtype bf16 weights
#   3. a 1-GPU torchrun run with the nccl backend
#   4. bench_amp.py --device cuda, 5. bench_train.py --device cuda
# Usage: bash scripts/gpu_check.sh [OUT_DIR]   (default checkpoints/gpu_check; the log is OUT_DIR/gpu_check.log)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-checkpoints/gpu_check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
BASE="sentence-transformers/all-MiniLM-L6-v2"
FAILED=()

run() {  # run NAME COMMAND...: the command's output to the terminal and the log; its failure recorded
  local name="$1"; shift
  echo "=== $name: $*" | tee -a "$LOG"
  local started=$SECONDS
  if "$@" 2>&1 | tee -a "$LOG"; then
    echo "=== $name: ok ($((SECONDS - started)) s)" | tee -a "$LOG"
  else
    echo "=== $name: FAILED ($((SECONDS - started)) s)" | tee -a "$LOG"
    FAILED+=("$name")
  fi
}

run "gpu present" "$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('GPU:', torch.cuda.get_device_name(0) if ok else 'none', '| bf16:', ok and torch.cuda.is_bf16_supported(), '| torch', torch.__version__); sys.exit(0 if ok else 1)"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "no CUDA GPU: nothing else can run" | tee -a "$LOG"; exit 1
fi
# -rs lists skips; a skipped GPU test is a failure here, so grep for it after the run
run "cuda tests" bash -c "'$PY' -m pytest -q -m gpu -rs -p no:cacheprovider tests 2>&1 | tee '$OUT/cuda_tests.txt'; test \${PIPESTATUS[0]} -eq 0 && ! grep -q '^SKIPPED' '$OUT/cuda_tests.txt'"
run "prepare data" "$PY" -m ragtrain prepare-data data/sample -o "$OUT/data" --overwrite
for precision in fp16 bf16; do
  run "train cuda $precision" "$PY" -m ragtrain train --train-data "$OUT/data/train.jsonl" --eval-data "$OUT/data/eval" \
      --model "$BASE" -o "$OUT/run-$precision" --device cuda --precision "$precision" \
      --epochs 1 --max-seq-length 128 --overwrite
  run "evaluate cuda $precision" "$PY" -m ragtrain evaluate "$BASE" "$OUT/run-$precision" --eval-data "$OUT/data/eval" \
      --split test --device cuda --precision "$precision" --max-seq-length 128 --no-cache
done
run "train cuda --dtype bf16 weights" "$PY" -m ragtrain train --train-data "$OUT/data/train.jsonl" --model "$BASE" \
    -o "$OUT/run-dtype-bf16" --device cuda --dtype bf16 --epochs 1 --max-seq-length 128 --overwrite
run "torchrun 1 GPU nccl" "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m ragtrain train \
    --train-data "$OUT/data/train.jsonl" --model "$BASE" -o "$OUT/run-torchrun" --device cuda --epochs 1 \
    --max-seq-length 128 --overwrite
# ragtrain joins no process group for a single process, so nccl itself is checked under torchrun too
cat > "$OUT/nccl_check.py" <<'PYEOF'
import torch, torch.distributed as dist
dist.init_process_group("nccl")
x = torch.ones(4, device="cuda") * (dist.get_rank() + 1)
dist.all_reduce(x)
print("nccl all_reduce over", dist.get_world_size(), "process(es):", x.tolist(), "backend", dist.get_backend())
ok = x.tolist() == [float(sum(range(1, dist.get_world_size() + 1)))] * 4
dist.destroy_process_group()
raise SystemExit(0 if ok else 1)
PYEOF
run "nccl all_reduce under torchrun" "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 "$OUT/nccl_check.py"
run "bench_amp cuda" "$PY" scripts/bench_amp.py --device cuda
run "bench_train cuda" "$PY" scripts/bench_train.py --device cuda --triples 640 --steps 10

echo "GPU: $("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")" | tee -a "$LOG"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "FAILED: ${FAILED[*]} (see $LOG)" | tee -a "$LOG"; exit 1
fi
echo "all GPU checks passed; figures above and in $LOG" | tee -a "$LOG"
