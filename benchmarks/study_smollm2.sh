#!/usr/bin/env bash
# The six-run study of issue 11, as a new user runs it: SmolLM2-135M-Instruct dense vs GPTQ 8/4/3-bit,
# Wanda 2:4 and magnitude 50%, each evaluated on machine ethics, fairness and MMLU with real data
# (--limit 5), then one report.  Prints the recommendation and the wall time of each step.
#
#   bash benchmarks/study_smollm2.sh [OUT_DIR]      (default /tmp/comptrust-study)
#
# Needs ../shared/data (DecodingTrust inputs and mmlu_test.jsonl).  About 30-60 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/comptrust-study}
DATA=${COMPTRUST_DT_DATA:-../shared/data/decodingtrust}
export COMPTRUST_MMLU_DATA=${COMPTRUST_MMLU_DATA:-../shared/data/mmlu/mmlu_test.jsonl}
CT=${CT:-.venv/bin/comptrust}
mkdir -p "$OUT/models" "$OUT/runs"

timed() { local start=$SECONDS; "$@"; echo "  ($((SECONDS - start)) s: $*)" >&2; }

MODEL=smollm2-135m-instruct
declare -A VARIANTS=(
  [gptq8]="--method gptq --bits 8 --group-size auto"
  [gptq4]="--method gptq --bits 4 --group-size auto"
  [gptq3]="--method gptq --bits 3 --group-size auto"
  [wanda24]="--method wanda --sparsity 0.5 --pattern 2:4"
  [mag50]="--method magnitude --sparsity 0.5"
)
for name in gptq8 gptq4 gptq3 wanda24 mag50; do
  # shellcheck disable=SC2086
  timed "$CT" compress "$MODEL" ${VARIANTS[$name]} --out "$OUT/models/$name" --quiet
done
EVAL=(--perspectives machine_ethics,fairness --benign mmlu --data-dir "$DATA" --limit 5 --quiet)
timed "$CT" eval "$MODEL" "${EVAL[@]}" --out "$OUT/runs/dense"
for name in gptq8 gptq4 gptq3 wanda24 mag50; do
  timed "$CT" eval "$OUT/models/$name" "${EVAL[@]}" --out "$OUT/runs/$name"
done
timed "$CT" report "$OUT"/runs/{dense,gptq8,gptq4,gptq3,wanda24,mag50} --out "$OUT/report"
echo "report: $OUT/report/report.html"
