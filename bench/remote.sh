#!/usr/bin/env bash
# Remote transfer figures on loopback: push and pull throughput against moto's S3 server and a
# shared directory, with boto3 (upload_file/download_file) and cp on the same bytes beside;
# then what a remote adds to a fully cached rerun. Medians of REPEATS.
#
#   cargo build --release --features test-kinds
#   bash bench/remote.sh            # BIN, SIZE (bytes per blob, 2 blobs), REPEATS, MOTO
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-target/release/dagrun}")
MOTO=$(realpath "${MOTO:-target/test-tools/moto}")
SIZE=${SIZE:-200000000}
REPEATS=${REPEATS:-3}
[ -d "$MOTO/moto" ] || python3 -m pip install -q --target "$MOTO" "moto[s3,server]==5.*"
work=$(mktemp -d)
trap 'kill $moto_pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PYTHONPATH=$MOTO python3 -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
for _ in $(seq 100); do curl -s -o /dev/null "$AWS_ENDPOINT_URL" && break; sleep 0.1; done
boto() { PYTHONPATH=$MOTO python3 -c "import boto3,sys; c=boto3.client('s3'); $1" "${@:2}"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mbps() { python3 -c "print(f'{$1/1e6/$2:.0f}')"; }

cd "$work"
cat > p.yaml <<YAML
pipeline: bench-remote
nodes:
  big1: { kind: test-blob, params: { bytes: $SIZE } }
  big2: { kind: test-blob, params: { bytes: $((SIZE + 1)) } }
YAML
for i in $(seq 20); do echo "  small$i: { kind: test-source, params: { rows: $((100 + i)) } }" >> p.yaml; done
"$BIN" p.yaml -q --cache-dir alice
total=$((2 * SIZE))
echo "payload: 2 artifacts of $SIZE bytes + 20 small tables; medians of $REPEATS"

for kind in s3 dir; do
  push=(); pull=(); refup=(); refdown=()
  for r in $(seq "$REPEATS"); do
    if [ $kind = s3 ]; then
      boto "c.create_bucket(Bucket='bench$r')"; url=s3://bench$r/dagrun
    else
      url=file://$work/shared$r
    fi
    t0=$(now); "$BIN" cache push p.yaml --cache-dir alice --remote "$url" 2>/dev/null; t1=$(now)
    rm -rf bob; "$BIN" cache pull p.yaml --cache-dir bob --remote "$url" 2>/dev/null; t2=$(now)
    push+=("$(echo "$t1 - $t0" | bc)"); pull+=("$(echo "$t2 - $t1" | bc)")
    blob=$(find alice/cas -name blob.bin)
    if [ $kind = s3 ]; then
      t0=$(now); for f in $blob; do boto "c.upload_file(sys.argv[1], 'bench$r', 'ref/'+sys.argv[1].replace('/','_'))" "$f"; done; t1=$(now)
      for f in $blob; do boto "c.download_file('bench$r', 'ref/'+sys.argv[1].replace('/','_'), 'dl.bin')" "$f"; done; t2=$(now)
    else
      mkdir -p ref$r; t0=$(now); for f in $blob; do cp "$f" ref$r/ && sync ref$r; done; t1=$(now)
      for f in ref$r/*; do cp "$f" dl.bin && sync dl.bin; done; t2=$(now)
    fi
    refup+=("$(echo "$t1 - $t0" | bc)"); refdown+=("$(echo "$t2 - $t1" | bc)")
  done
  mp=$(printf '%s\n' "${push[@]}" | median); ml=$(printf '%s\n' "${pull[@]}" | median)
  ru=$(printf '%s\n' "${refup[@]}" | median); rd=$(printf '%s\n' "${refdown[@]}" | median)
  ref=$([ $kind = s3 ] && echo "boto3" || echo "cp+sync")
  echo "$kind: push $(mbps $total "$mp") MB/s ($mp s), pull $(mbps $total "$ml") MB/s ($ml s); $ref up $(mbps $total "$ru") MB/s, down $(mbps $total "$rd") MB/s"
done

# Fully cached rerun: no remote, a configured remote (every key local: never asked), and a
# teammate whose keys are all only in the remote (22 lookups, nothing downloaded).
boto "c.create_bucket(Bucket='rerun')"
"$BIN" cache push p.yaml --cache-dir alice --remote s3://rerun/x 2>/dev/null
rm -rf carol; "$BIN" p.yaml -q --cache-dir carol --remote s3://rerun/x
time_runs() { for _ in $(seq 7); do t0=$(now); "$BIN" p.yaml -q "$@"; t1=$(now); echo "$t1 - $t0" | bc; done | median; }
a=$(time_runs --cache-dir alice --no-remote)
b=$(time_runs --cache-dir alice --remote s3://rerun/x)
c=$(time_runs --cache-dir carol --remote s3://rerun/x)
echo "fully cached rerun (22 nodes, medians of 7): local only ${a}s; with an S3 remote configured ${b}s; all 22 only in the remote ${c}s"
