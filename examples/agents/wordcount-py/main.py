"""wordcount-py: a stateful NexusCore agent in plain Python (no SDK needed).

Protocol (docs/agent-protocol.md): one JSON request per stdin line,
{"id", "input", "context"}; one JSON reply per stdout line, {"id", "output",
"context"} or {"id", "error"}; optional {"log": ...} lines.
"""
import json
import sys


def handle(text, context):
    if not isinstance(text, str):
        raise ValueError("input must be a string")
    words = len(text.split())
    total = (context or {}).get("total", 0) + words
    calls = (context or {}).get("calls", 0) + 1
    return {"words": words, "total": total, "calls": calls}, {"total": total, "calls": calls}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            output, context = handle(req.get("input"), req.get("context"))
            reply = {"id": req["id"], "output": output, "context": context}
        except Exception as e:  # the agent reports, the node decides
            reply = {"id": req.get("id", 0), "error": str(e)}
        print(json.dumps({"log": "counted"}), flush=True)
        print(json.dumps(reply), flush=True)


main()
