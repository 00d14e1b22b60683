#!/usr/bin/env bash
# Prepares gpu-bin/ for bench/gpu_check.sh: a stripped CUDA build of dagrun, the KAR authors'
# RS/ code (from a checkout given as $1; never committed) and the benchmark world (4,000
# users, 2,000 items, knowledge dim 64) exported in KAR's layout. gpu-bin/ is git-ignored.
set -euo pipefail
KAR=${1:?usage: bench/gpu_prepare.sh PATH/TO/KAR/CHECKOUT [python]}
PY=${2:-python3}
CUDARC_CUDA_VERSION=13000 cargo build --release --features cuda
mkdir -p gpu-bin
# The device tool carries at most 64 MiB: the stripped binary (~70 MB) travels gzipped.
cp target/release/dagrun gpu-bin/dagrun && strip gpu-bin/dagrun && gzip -f gpu-bin/dagrun
rm -rf gpu-bin/kar && mkdir -p gpu-bin/kar && cp -r "$KAR/RS" gpu-bin/kar/RS
work=$(mktemp -d)
cat > "$work/p.yaml" <<'YAML'
pipeline: gpu_world
nodes:
  data: { kind: load, params: { dataset: synthetic, users: 4000, items: 2000, seed: 1 } }
  truth: { kind: synthetic-knowledge, inputs: { data: data }, params: { dim: 64, seed: 1 } }
YAML
(cd "$work" && "$OLDPWD/target/release/dagrun" p.yaml -q)
d=$(cd "$work" && "$OLDPWD/target/release/dagrun" show p.yaml data --path)
u=$(cd "$work" && "$OLDPWD/target/release/dagrun" show p.yaml truth.users --path)
i=$(cd "$work" && "$OLDPWD/target/release/dagrun" show p.yaml truth.items --path)
rm -rf gpu-bin/proc
"$PY" bench/kar_parity/export_kar.py "$work/$d" gpu-bin/proc --users "$work/$u" --items "$work/$i" --prefix synth
du -sh gpu-bin
