#!/bin/sh
# hello-sh: a stateless NexusCore agent in POSIX sh. It answers one request
# (docs/agent-protocol.md) and exits; the node starts a fresh sandbox per call.
read -r line || exit 1
id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
[ -n "$id" ] || id=0
printf '{"id":%s,"output":{"greeting":"hello from sh"}}\n' "$id"
