#!/usr/bin/env bash
# The quickstart on CUDA beside the CPU, run on an NVIDIA machine from the repository root with
# gpu-bin/ made by bench/gpu_models_prepare.sh on a build machine. Prints each stage's seconds
# on both devices from the run reports.
# The real model weights do not fit the device tool's carry, so the models are SmolLM2's and
# all-MiniLM-L6-v2's own configs and tokenizers with random weights drawn here (seeded): the
# stages do the same work, the answers are noise. USERS, SAMPLES, TOKENS, PAIRS size the run
# (defaults: a shrunk quickstart); CPU=0 skips the CPU run.
set -u
LOG_NAME=gpu_quickstart.log . bench/gpu_env.sh
S=/tmp/smol-random M=/tmp/minilm-random
rm -rf $S $M && mkdir -p $S $M && cp -r gpu-bin/smol-shape/* $S/ && cp -r gpu-bin/minilm-shape/* $M/
python3 - "$S" "$M" <<'PY'
import sys, torch, transformers
torch.manual_seed(0)
transformers.LlamaForCausalLM(transformers.AutoConfig.from_pretrained(sys.argv[1])).save_pretrained(sys.argv[1])
transformers.BertModel(transformers.AutoConfig.from_pretrained(sys.argv[2]), add_pooling_layer=False).save_pretrained(sys.argv[2])
print("random SmolLM2- and MiniLM-shaped models written")
PY
ARGS="--set llm.model=$S --set bert.model=$M --set vars.users=${USERS:-40} --set vars.samples=${SAMPLES:-2} --set vars.new_tokens=${TOKENS:-24} --set vars.pairs=${PAIRS:-8} --json -q"
run() {
  local dev=$1
  rm -rf /tmp/qs-$dev
  timeout -k 5 ${LIMIT:-500} $B pipelines/quickstart.yaml --cache-dir /tmp/qs-$dev --device $dev $ARGS > /tmp/qs-$dev.json
  echo "exit $? on $dev"
}
run cuda
[ "${CPU:-1}" = 1 ] && run cpu
python3 - <<'PY'
import json, os
rep = {}
for dev in ("cuda", "cpu"):
    p = f"/tmp/qs-{dev}.json"
    if os.path.exists(p) and os.path.getsize(p):
        rep[dev] = {n["id"]: n for n in json.load(open(p))["nodes"]}
nodes = list(next(iter(rep.values())).keys()) if rep else []
print(f"{'node':18} {'cuda s':>9} {'cpu s':>9}")
for n in nodes:
    cells = [f"{rep[d][n].get('seconds', float('nan')):9.2f}" if d in rep and n in rep[d] else f"{'-':>9}" for d in ("cuda", "cpu")]
    print(f"{n:18} {cells[0]} {cells[1]}")
PY
