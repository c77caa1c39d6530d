#!/usr/bin/env bash
# The README's main job: a local mesh on loopback.
#
# Today: two nodes in one cluster exchange signed (Ed25519 NCAP envelopes),
# encrypted (ZeroMQ CURVE) pings; the demo shows each node's status as the
# CLI prints it, then stops them. `--keep` leaves them running until Ctrl-C.
set -euo pipefail
NEXUS=${1:-build/release/nexus}
KEEP=${2:-}
NEXUS=$(realpath "$NEXUS")
work=$(mktemp -d /tmp/nexus-demo-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

cluster=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
echo "== a new cluster $cluster, two nodes on 127.0.0.1"
declare -A id bind api
for n in a b; do
  id[$n]=$("$NEXUS" init --data-dir "$work/$n" --cluster-id "$cluster" | awk '{print $3}')
done
bind[a]=127.0.0.1:17400; api[a]=127.0.0.1:17401
bind[b]=127.0.0.1:17410; api[b]=127.0.0.1:17411
echo "${id[b]}  # node b" >"$work/a/trusted.keys"
echo "${id[a]}  # node a" >"$work/b/trusted.keys"

start() { # name peer
  "$NEXUS" node --data-dir "$work/$1" --bind "${bind[$1]}" --api "${api[$1]}" \
    --peer "${id[$2]}@${bind[$2]}" --ping-interval-ms 200 >"$work/$1.log" 2>&1 &
  pids+=($!)
  echo "node $1: id ${id[$1]:0:16}...  mesh ${bind[$1]}  api ${api[$1]}"
}
start a b
start b a

for _ in $(seq 50); do
  "$NEXUS" status --api "${api[a]}" --data-dir "$work/a" --json 2>/dev/null |
    grep -q '"peer_count": 1' && break
  sleep 0.1
done
sleep 1
for n in a b; do
  echo
  echo "== nexus status --api ${api[$n]} (node $n)"
  "$NEXUS" status --api "${api[$n]}" --data-dir "$work/$n"
done
echo
echo "== envelope counters on node a"
"$NEXUS" status --api "${api[a]}" --data-dir "$work/a" --json |
  python3 -c 'import json,sys; c=json.load(sys.stdin)["counters"]; print("  accepted=%d bad_sig=%d replay=%d unknown_sender=%d; transport sent=%d received=%d" % (c["envelope"]["accepted"], c["envelope"]["bad_sig"], c["envelope"]["replay"], c["envelope"]["unknown_sender"], c["transport"]["sent"], c["transport"]["received"]))'
if [ "$KEEP" = "--keep" ]; then
  echo; echo "nodes keep running; Ctrl-C stops them"; wait
fi
echo; echo "demo done: both nodes stopped"
