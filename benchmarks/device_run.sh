#!/usr/bin/env bash
# The prepared GPU checks of issues 12, 7 and 3, one device call each (each well inside 10 minutes; with
# 15 minutes of device time a session fits the first, or the first and the last):
#   device_run.sh scheduling   (timeout_s 420)  issue 12: continuous batching vs static batches vs one row
#       at a time on random Llama-2-13B and -7B shapes, EOS on: real DecodingTrust stereotype prompts
#       (temperature 1, max_tokens 150), each row ended at a completion length drawn from SmolLM2's real
#       outputs on those prompts (benchmarks/data/completion_lengths.json) -> $OUT/scheduling-*
#   device_run.sh throughput   (timeout_s 560)  throughput on random Llama-2-13B and -7B shapes, EOS off: one
#       prompt at a time, plain batched generate (batch 128), comptrust's hf backend (continuous), vLLM if
#       installed; then sampled decoding on 7B, vectorized vs per-row-loop sampler -> $OUT/throughput-*
#   device_run.sh compression  (timeout_s 300)  GPTQ 4-bit and Wanda 2:4 wall time / peak memory on the
#       7B shape -> $OUT/compression-7b.log
# Prepare first, here: bash benchmarks/device_prepare.sh, and carry [".device"].  On a machine without a
# GPU it runs small CPU checks of the same scripts instead (how this script itself is checked).
set -uo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-throughput}
OUT=${OUT:-out/device}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 COMPTRUST_HOME=${COMPTRUST_HOME:-/tmp/comptrust-home}
# The compression stack travels as wheels (the device cannot reach PyPI); throughput needs none of it.
if [ "$WHAT" = compression ] && [ -d .device/wheels ] && ! "$PY" -c "import llmcompressor" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ct-site \
    .device/wheels/*.whl && export PYTHONPATH=/tmp/ct-site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
TOK=()
[ -d .device/tokenizer ] && TOK=(--tokenizer .device/tokenizer)
date -u +"%Y-%m-%d %H:%M UTC" | tee "$OUT/date.txt"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  if [ "$WHAT" = scheduling ]; then
    for shape in llama2-13b llama2-7b; do
      timeout 200 "$PY" benchmarks/scheduling.py --shape "$shape" "${TOK[@]}" --workloads stereotype \
        --prompts-file .device/dt_prompts.json --lengths-file benchmarks/data/completion_lengths.json \
        --ways one,static,continuous --one-rows 6 --json "$OUT/scheduling-$shape.json" 2>&1 \
        | tee "$OUT/scheduling-$shape.log"
    done
  elif [ "$WHAT" = throughput ]; then
    for shape in llama2-13b llama2-7b; do
      timeout 210 "$PY" benchmarks/throughput.py --shape "$shape" "${TOK[@]}" --prompts 512 --reference-prompts 8 \
        --plain-prompts 256 --max-new-tokens 128 --json "$OUT/throughput-$shape.json" 2>&1 | tee "$OUT/throughput-$shape.log"
    done
    timeout 100 "$PY" benchmarks/throughput.py --shape llama2-7b "${TOK[@]}" --prompts 512 --max-new-tokens 64 \
      --temperature 1 --ways hf-static,hf-loop --json "$OUT/throughput-llama2-7b-sampled.json" 2>&1 \
      | tee "$OUT/throughput-llama2-7b-sampled.log"
  elif [ "$WHAT" = compression ]; then
    timeout 300 "$PY" benchmarks/compression_gpu.py "${TOK[@]}" --workdir /tmp/ct-gpu-bench 2>&1 \
      | grep -v -E "it/s\]|s/it\]" | tee "$OUT/compression-7b.log"
  fi
else
  if [ "$WHAT" = scheduling ]; then
    echo "no GPU: the scheduling check on a toy random shape (the GPU shapes' path) only"
    "$PY" benchmarks/scheduling.py --shape llama-tiny "${TOK[@]}" --workloads stereotype \
      --prompts-file .device/dt_prompts.json --lengths-file benchmarks/data/completion_lengths.json \
      --ways one,static,continuous --one-rows 4 --max-new-tokens 40 --slots 16 --static-batch 16 \
      --json "$OUT/scheduling-cpu.json" 2>&1 | tee "$OUT/scheduling-cpu.log"
  else
    echo "no GPU: SmolLM2 throughput check only"
    "$PY" benchmarks/throughput.py "${TOK[@]}" --prompts 16 --reference-prompts 4 --plain-batch-size 8 \
      --max-new-tokens 16 --json "$OUT/throughput-cpu.json" 2>&1 | tee "$OUT/throughput-cpu.log"
  fi
fi
