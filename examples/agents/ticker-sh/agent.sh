#!/bin/sh
# ticker-sh: a long-running NexusCore agent in POSIX sh. Deployed with
# `nexus agent deploy ticker-sh --replicas N`, it logs one line a second,
# forever ({"log": ...} lines, docs/agent-protocol.md); the node keeps the
# recent ones for `nexus agent logs` and restarts it if it ever exits.
n=0
echo "ticker-sh starting" >&2
while :; do
  n=$((n + 1))
  printf '{"log":"tick %d"}\n' "$n"
  sleep 1
done
