#!/usr/bin/env bash
# Everything benchmarks/gpu/ measures, in one command on a lent GPU machine (about 10
# minutes): the arms on all-MiniLM-L6-v2 (gold set, FollowIR and NanoBEIR fixtures, or
# real copies with DATA_DIR=...), then the Ray engine's vLLM processor on the bundled
# SmolLM2 GGUF when vLLM is installed. Results: benchmarks/out/gpu_arms.json,
# benchmarks/out/vllm_ray.json, and each step's log in benchmarks/out/gpu-*.log.
#
#   bash benchmarks/gpu/run_all.sh            # from the repository root
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
mkdir -p benchmarks/out
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
extra=()
[ -n "${DATA_DIR:-}" ] && extra=(--data-dir "$DATA_DIR")
timeout 420 "$PY" benchmarks/gpu/arms.py "${extra[@]}" 2>&1 | tee benchmarks/out/gpu-arms.log
[ "${PIPESTATUS[0]}" = 0 ] || status=1
if "$PY" -c "import vllm, ray" 2>/dev/null; then
  timeout 240 "$PY" benchmarks/gpu/vllm_ray.py --limit 48 2>&1 | tee benchmarks/out/gpu-vllm.log
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
else
  echo "vllm_ray.py skipped: vllm or ray is not installed (benchmarks/gpu/README.md)" \
    | tee benchmarks/out/gpu-vllm.log
fi
exit $status
