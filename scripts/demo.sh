#!/usr/bin/env bash
# The README's main job: a local mesh on loopback, on the embedded defaults.
#
# Three nodes of one cluster on 127.0.0.1: node a bootstraps it, b and c join
# with a token made on a (nothing else: no trust file, no peer list); they
# find each other by gossip, elect a Raft leader, and exchange only signed (Ed25519 NCAP envelopes),
# encrypted (ZeroMQ CURVE) messages. The demo then writes to the replicated
# key-value store through one node and reads it on another, opens two ledger
# accounts and moves money between them (signed on this machine, verified by
# every node), publishes the example agents and runs them across the mesh (a
# stateless run, a stateful session), charged to an account. `--keep` leaves
# the nodes running until Ctrl-C.
set -euo pipefail
NEXUS=$(realpath "${1:-build/release/nexus}")
KEEP=${2:-}
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/nexus-demo-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ nexus %s\n' "$*"; "$NEXUS" "$@"; }

nodes=(a b c)
declare -A bind api
port=17400
for n in "${nodes[@]}"; do
  bind[$n]=127.0.0.1:$port
  api[$n]=127.0.0.1:$((port + 1))
  port=$((port + 10))
done
OPKEY="$work/a/operator.key" # made by node a at bootstrap; signs tokens, mints, accounts

step "node a bootstraps a new cluster (it creates the operator key and the ledger's genesis)"
# Each node advertises a fixed capacity: on a busy 2-core VM the detected free CPU can
# drop to 0, and placement would then rightly find no room for a run.
SIZE=(--cpu-millicores 2000 --mem-mb 4096)
"$NEXUS" node --data-dir "$work/a" --bind "${bind[a]}" --api "${api[a]}" --bootstrap "${SIZE[@]}" \
  >"$work/a.log" 2>&1 &
pids+=($!)
a() { "$NEXUS" "$@" --api "${api[a]}" --data-dir "$work/a"; }
wait_until() { # seconds, what, command...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: timed out waiting for $what; node logs are in $work" >&2
      tail -5 "$work"/*.log >&2
      trap - EXIT
      exit 1
    fi
    sleep 0.2
  done
}
wait_until 30 "node a's API" a status
registry_size() { a status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["raft"]["registry"]["members"])'; }
has_genesis() { [ "$(registry_size)" -ge 1 ]; }
wait_until 30 "the ledger's genesis" has_genesis

step "a join token for two nodes, made on node a (signed with the operator key)"
token=$(a token create --uses 2 --ttl 10m --operator-key "$OPKEY" 2>"$work/token.err") || { cat "$work/token.err" >&2; exit 1; }
echo "token: ${token:0:60}..."
for n in b c; do
  step "node $n joins with the token and nothing else (no trust file, no peer list)"
  printf '$ nexus node --join %s --token <token> --data-dir %s\n' "${bind[a]}" "$work/$n"
  "$NEXUS" node --data-dir "$work/$n" --bind "${bind[$n]}" --api "${api[$n]}" "${SIZE[@]}" \
    --join "${bind[a]}" --token "$token" >"$work/$n.log" 2>&1 &
  pids+=($!)
  wait_until 30 "node $n's API" "$NEXUS" status --api "${api[$n]}" --data-dir "$work/$n"
  grep -m1 '^joined' "$work/$n.log"
done
three_voters() { [ "$(a status --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["raft"]["voters"]))')" = 3 ]; }
all_alive() { [ "$(a members --json | grep -c '"state": "alive"')" = 3 ]; }
roles_known() { ! a members --json | grep -q '"raft_role": "none"\|"raft_role": "learner"'; }
wait_until 30 "three Raft voters (joiners start as learners, promoted once caught up)" three_voters
wait_until 30 "a full gossip view" all_alive
wait_until 30 "Raft roles in gossip" roles_known

step "the mesh, as gossip sees it from node a"
show members --api "${api[a]}" --data-dir "$work/a"
step "node b's view of itself (Raft role, peers and round trips)"
show status --api "${api[b]}" --data-dir "$work/b"

step "replicated key-value store: write through node b, read linearizably on node c"
show kv put greeting "hello, mesh" --api "${api[b]}" --data-dir "$work/b"
show kv get greeting --api "${api[c]}" --data-dir "$work/c"

step "ledger: accounts and transfers signed on this machine, applied by every node"
for who in alice bob; do
  show account create "$who" --key-file "$work/$who.key" --api "${api[a]}" --data-dir "$work/a"
done
show ledger mint --to alice --amount 100 --api "${api[a]}" --data-dir "$work/a"
show ledger transfer --from alice --to bob --amount 30 --key-file "$work/alice.key" \
  --api "${api[b]}" --data-dir "$work/b"
for who in alice bob; do
  show ledger balance "$who" --api "${api[c]}" --data-dir "$work/c"
done
show ledger verify --api "${api[c]}" --data-dir "$work/c"

step "agents across the mesh: publish on node a (packed, hashed, signed here); every member copies the bundles"
for agent in hello-sh wordcount-py; do
  show agent publish "examples/agents/$agent" --api "${api[a]}" --data-dir "$work/a"
done
show agent list --api "${api[a]}" --data-dir "$work/a"
# carol pays for the runs; "default" (the agents' tenant) is paid
show account create carol --key-file "$work/carol.key" --api "${api[a]}" --data-dir "$work/a"
show account create default --key-file "$work/default.key" --api "${api[a]}" --data-dir "$work/a"
show ledger mint --to carol --amount 1000 --api "${api[a]}" --data-dir "$work/a"

step "a stateless run asked on node c, placed on the member with the most free capacity"
show agent plan hello-sh --api "${api[c]}" --data-dir "$work/c"
show agent run hello-sh --input '"mesh"' --account carol --api "${api[c]}" --data-dir "$work/c"

step "a stateful session: its context is checkpointed through Raft after every call"
sid=$("$NEXUS" session open wordcount-py --account carol --api "${api[b]}" --data-dir "$work/b")
echo "session $sid"
show session send "$sid" --input '"to be or not to be"' --api "${api[b]}" --data-dir "$work/b"
show session send "$sid" --input '"that is the question"' --api "${api[c]}" --data-dir "$work/c"
show session close "$sid" --api "${api[a]}" --data-dir "$work/a"

step "what the runs cost: carol's balance, the ledger's last entries, verified on node b"
show ledger balance carol --api "${api[a]}" --data-dir "$work/a"
show ledger log --after 2 --api "${api[b]}" --data-dir "$work/b"
show ledger verify --api "${api[b]}" --data-dir "$work/b"

step "one agent in the sandbox on this machine (no node involved)"
show agent run-local examples/agents/hello-sh --input '"local"'

step "envelope counters on node a"
a status --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["counters"]; print("  accepted=%d bad_sig=%d replay=%d unknown_sender=%d; transport sent=%d received=%d" % (c["envelope"]["accepted"], c["envelope"]["bad_sig"], c["envelope"]["replay"], c["envelope"]["unknown_sender"], c["transport"]["sent"], c["transport"]["received"]))'
if [ "$KEEP" = "--keep" ]; then
  echo; echo "nodes keep running (data in $work); Ctrl-C stops them"; wait
fi
echo; echo "demo done: the three nodes are stopped and their data removed"
