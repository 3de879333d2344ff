#!/usr/bin/env bash
# Run HERE, before a GPU session: fills .device/ (git-ignored) with what the GPU machine lacks.
# That machine has torch and transformers but cannot reach PyPI and has no GGUF reader, so it gets
# SmolLM2's tokenizer as a plain folder and the wheels of the compression stack (~10 MB, Python 3.12);
# nor does it have ../shared, so the scheduling check gets its DecodingTrust prompts as message rows
# (stereotype, 43 records per scenario x 5 draws = 645 rows, ~1 MB).
# Then, on the device: command "bash benchmarks/device_run.sh", carry [".device"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .device/wheels
"$PY" - <<'PYEOF'
from transformers import AutoTokenizer
from comptrust.models import resolve_model
AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct").path).save_pretrained(".device/tokenizer")
PYEOF
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} "$PY" benchmarks/scheduling.py --workloads stereotype --limit 43 --samples 5 \
  --ways "" --save-prompts .device/dt_prompts.json
# The versions pyproject.toml resolves to here (llmcompressor's stack, minus what the device has).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .device/wheels llmcompressor==0.14.0.1 compressed-tensors==0.19.0 loguru==0.7.3 pydantic==2.14.4 \
  pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 datasets==5.2.0 dill==0.4.1 \
  multiprocess==0.70.19
du -sh .device
