#!/usr/bin/env python3
"""Benchmark: mesh-wide stateless agent runs on three nodes on loopback.

1. Latency of one remote run, p50/p99, from submission (POST /v1/runs to n0) to
   the reply, the run pinned to n1 by a label constraint, one run at a time
   over a keep-alive connection, split into the sandboxed run on n1 (the
   answer's timing.exec_ms) and the rest; and the same run placed on n0
   itself, to show what the mesh hop costs. Goal: p50 under 10 ms.
2. End-to-end stateless runs per second with CONCURRENCY clients spread over
   the three nodes' APIs, placement free (runs land anywhere), next to local
   sandboxed runs per second of the same bundle in the same run
   (bench_agent_local: sbx_run_once, and a warm pool, with as many threads).

The agent is a POSIX sh agent (one request, one answer). Every node advertises
a fixed 64 cores and 64 GiB (--cpu-millicores/--mem-mb) so the machine's own
load does not make placement refuse runs; admission still holds each run's
100 millicores while it runs.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'integration'))
from harness import NEXUS, Cluster, raft_leader, run, wait_for  # noqa: E402

SECONDS = float(os.environ.get('NX_BENCH_SECONDS', '4'))
LAT_RUNS = int(os.environ.get('NX_BENCH_LATENCY_RUNS', '200'))
CONCURRENCY = int(os.environ.get('NX_BENCH_CONCURRENCY', '8'))
# one run at a time, this far apart: the latency of one run, not of a queue behind
# the previous run's clean-up and warm-pool refill (measured too, back to back)
GAP_S = float(os.environ.get('NX_BENCH_GAP_MS', '30')) / 1000.0
LOCAL = os.path.join(os.path.dirname(os.path.abspath(NEXUS)), 'bench', 'bench_agent_local')
SIZES = ('--cpu-millicores', '64000', '--mem-mb', '65536')


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, (len(xs) * p + 99) // 100 - 1))] if xs else 0


def make_bundle(root):
    d = os.path.join(root, 'bench-echo')
    os.makedirs(d)
    with open(os.path.join(d, 'manifest.json'), 'w') as f:
        json.dump({'name': 'bench-echo', 'version': '1.0.0', 'kind': 'stateless',
                   'entrypoint': ['/usr/bin/sh', '/agent/agent.sh'],
                   'resources': {'cpu_millicores': 100, 'memory_mb': 16},
                   'timeout_ms': 60000}, f)
    with open(os.path.join(d, 'agent.sh'), 'w') as f:
        f.write('#!/bin/sh\nread -r line || exit 1\n'
                'printf \'{"id":1,"output":"ok"}\\n\'\n')
    return d


class Client:
    def __init__(self, node):
        host, port = node.api.split(':')
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {'Authorization': 'Bearer ' + node.token,
                        'Content-Type': 'application/json'}

    def run(self, body):
        self.conn.request('POST', '/v1/runs', body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data


def latency(n0, zone, gap_s=GAP_S):
    c = Client(n0)
    body = json.dumps({'agent': 'bench-echo', 'input': 'x', 'constraints': ['zone=' + zone]})
    lats, warm, nodes, execs, queues = [], 0, set(), [], []
    for i in range(20 + LAT_RUNS):
        t0 = time.perf_counter()
        status, data = c.run(body)
        dt = time.perf_counter() - t0
        if status != 200:
            raise SystemExit('run failed: %d %s' % (status, data[:200]))
        r = json.loads(data)
        time.sleep(gap_s)
        if i >= 20:
            lats.append(dt)
            execs.append(r['timing']['exec_ms'] / 1e3)
            queues.append(r['timing']['queue_ms'] / 1e3)
            warm += bool(r.get('warm'))
            nodes.add(r['node'])
    return lats, warm, nodes, execs, queues


def throughput(nodes):
    stop_at = time.monotonic() + SECONDS
    counts, errors, where = [0] * CONCURRENCY, [], {}
    lock = threading.Lock()
    body = json.dumps({'agent': 'bench-echo', 'input': 'x'})

    def worker(i):
        c = Client(nodes[i % len(nodes)])
        while time.monotonic() < stop_at:
            status, data = c.run(body)
            if status != 200:
                errors.append(status)
                continue
            counts[i] += 1
            node = json.loads(data)['node']
            with lock:
                where[node] = where.get(node, 0) + 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENCY)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0), errors, where


def local(bundle, pool):
    if not os.path.exists(LOCAL):
        return None
    out = subprocess.run([LOCAL, bundle, str(CONCURRENCY), str(SECONDS), str(pool)],
                         stdout=subprocess.PIPE, text=True, timeout=120)
    try:
        return json.loads(out.stdout)
    except ValueError:
        return None


def main():
    if os.geteuid() != 0:
        print('bench_agents: needs root (sandbox); skipped')
        return
    c = Cluster()
    tmp = tempfile.mkdtemp(prefix='nexus-bench-agents-')
    try:
        cid = os.urandom(16).hex()
        nodes = [c.node('b%d' % i, cid) for i in range(3)]
        for nd in nodes:
            nd.trust(*nodes)
        for i, nd in enumerate(nodes):
            nd.start_raft(nodes, *(SIZES + ('--label', 'zone=%s' % 'abc'[i], '--log-level',
                                            'warn')))
        raft_leader(nodes)
        wait_for(lambda: all(nd.request('GET', '/v1/ledger/genesis?stale')[0] == 200
                             for nd in nodes), timeout=20, what='genesis')
        wait_for(lambda: all(len(nd.request('GET', '/v1/members')[1]['members']) == 3
                             for nd in nodes), timeout=20, what='members')
        bundle = make_bundle(tmp)
        ok = False
        for nd in nodes:
            res = run('agent', 'publish', bundle, '--api', nodes[0].api, '--data-dir',
                      nodes[0].data_dir, '--operator-key',
                      os.path.join(nd.data_dir, 'operator.key'))
            if res.returncode == 0:
                ok = True
                break
        if not ok:
            raise SystemExit('publish failed: %s' % res.stderr)
        wait_for(lambda: all(nd.request('GET', '/v1/agents/bench-echo')[0] == 200
                             for nd in nodes), timeout=10, what='registry')

        lats, warm, where, execs, queues = latency(nodes[0], 'b')
        self_lats, _, _, self_execs, self_queues = latency(nodes[0], 'a')
        b2b, _, _, _, _ = latency(nodes[0], 'b', 0.0)
        rate, errors, spread = throughput(nodes)
        cold = local(bundle, 0)
        pooled = local(bundle, 2)

        print('%-58s %10s %10s' % ('one remote run (n0 -> n1), %.0f ms apart' % (GAP_S * 1e3),
                                   'p50_ms', 'p99_ms'))
        print('%-58s %10.2f %10.2f' % ('submission to reply (%d runs, %d warm)'
                                       % (len(lats), warm), pct(lats, 50) * 1e3,
                                       pct(lats, 99) * 1e3))
        print('%-58s %10.2f %10.2f' % ('  of which the sandboxed run on n1 (take, call, wait)',
                                       pct(execs, 50) * 1e3, pct(execs, 99) * 1e3))
        print('%-58s %10.2f %10.2f' % ('  waiting for a helper thread on n1', pct(queues, 50) * 1e3,
                                       pct(queues, 99) * 1e3))
        over = [a - b - q for a, b, q in zip(lats, execs, queues)]
        print('%-58s %10.2f %10.2f' % ('  the rest: HTTP, placement, 2 mesh hops, loop',
                                       pct(over, 50) * 1e3, pct(over, 99) * 1e3))
        print('%-58s %10.2f %10.2f' % ('remote runs back to back (no gap)', pct(b2b, 50) * 1e3,
                                       pct(b2b, 99) * 1e3))
        print('%-58s %10.2f %10.2f' % ('the same run placed on n0 itself (no mesh hop)',
                                       pct(self_lats, 50) * 1e3, pct(self_lats, 99) * 1e3))
        over = [a - b - q for a, b, q in zip(self_lats, self_execs, self_queues)]
        print('%-58s %10.2f %10.2f' % ('  the rest: HTTP, placement, loop',
                                       pct(over, 50) * 1e3, pct(over, 99) * 1e3))
        print()
        print('%-58s %10s' % ('stateless runs, %d concurrent, %.0f s' % (CONCURRENCY, SECONDS),
                              'runs/s'))
        print('%-58s %10.1f' % ('end to end across 3 nodes (HTTP, placement, mesh)', rate))
        if cold:
            print('%-58s %10.1f' % ('local sandboxed, sbx_run_once (no node)', cold['runs_per_s']))
        if pooled:
            print('%-58s %10.1f' % ('local sandboxed, warm pool of 2 per thread (no node)',
                                    pooled['runs_per_s']))
        print('runs per node: %s; errors: %d' % (
            ', '.join('%s=%d' % (n[:8], k) for n, k in sorted(spread.items())), len(errors)))
        goal = pct(lats, 50) * 1e3 < 10
        with open('/proc/loadavg') as f:
            load = f.read().split()[0]
        print('goal p50 < 10 ms: %s (load average %s on %d CPUs)' % (
            'met' if goal else 'NOT met', load, os.cpu_count()))
    finally:
        c.close()
        subprocess.call(['rm', '-rf', tmp])


if __name__ == '__main__':
    main()
