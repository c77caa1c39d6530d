#!/usr/bin/env python3
"""Benchmark: signed ledger transfers per second through the whole path (HTTP API,
Raft, apply) of a three-voter cluster on loopback, next to two baselines measured in
the same run (issue 6, item 8):

- the raw commit rate of the same cluster: KV PUTs from bench_kv_load (the Raft node
  benchmark's C client) at the same concurrency, same leader;
- the raw single-core Ed25519 verify rate over the very commands that were posted
  (bench_ledger_load measures it on its own thread, CPU time).

Goal: transfers/s >= 70% of the verify rate. Every voter must verify each transfer
once at apply; on one machine the three voters share its cores, so the machine-wide
ceiling is cores / 3 of the single-core verify rate (the table prints it). The CPU
time of each voter per transfer (from /proc, during the timed phase) shows where the
rest goes; "one core per voter" is the rate the leader's CPU per transfer would allow
if each voter had a core of its own (the deployment the goal has in mind).

The transfers are signed by bench_ledger_load before its timed phase (the client's
signing is not measured) with key files that `nexus account create` wrote; each
account pays the next one 1, so none can overdraw. Settings: NX_BENCH_LEDGER_COUNT
(transfers per level), NX_BENCH_LEDGER_LEVELS (connections, comma-separated),
NX_BENCH_SECONDS (KV baseline per level).
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'integration'))
from harness import NEXUS, Cluster, raft_leader, raft_status, run, wait_for  # noqa: E402

LEVELS = [int(x) for x in os.environ.get('NX_BENCH_LEDGER_LEVELS', '64,256').split(',')]
COUNT = int(os.environ.get('NX_BENCH_LEDGER_COUNT', '20000'))
KV_SECONDS = float(os.environ.get('NX_BENCH_SECONDS', '4'))
ACCOUNTS = 32
TICK = ('--raft-tick-ms', '50')


def bench_prog(name):
    return os.path.join(os.path.dirname(os.path.abspath(NEXUS)), 'bench', name)


def result_line(out):
    line = [x for x in out.splitlines() if x.startswith('RESULT')][-1]
    return {k: float(v) for k, v in (f.split('=') for f in line.split()[1:])}


def proc_cpu_s(pid):
    """User + system CPU seconds of a process (from /proc, clock ticks)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def cluster(c):
    cid = os.urandom(16).hex()
    nodes = [c.node('r%d' % i, cid) for i in range(3)]
    seed = os.urandom(32).hex()
    op_key = os.path.join(c.workdir, 'operator.key')
    for path in [op_key] + [os.path.join(n.data_dir, 'operator.key') for n in nodes]:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, ('nexus-ed25519-key-v1\nseed=%s\n' % seed).encode())
        os.close(fd)
    for nd in nodes:
        nd.trust(*nodes)
    for nd in nodes:
        nd.start_raft(nodes, *TICK)
    leader = raft_leader(nodes)
    wait_for(lambda: leader.request('GET', '/v1/ledger/genesis')[0] == 200, timeout=15,
             what='ledger genesis')
    return nodes, leader, op_key, cid


def make_accounts(c, leader, op_key):
    keys = []
    for i in range(ACCOUNTS):
        key = os.path.join(c.workdir, 'b%d.key' % i)
        for args in (('account', 'create', 'b%d' % i, '--key-file', key),
                     ('ledger', 'mint', '--to', 'b%d' % i, '--amount', '1000000000')):
            res = run(*args, '--api', leader.api, '--token', leader.token, '--operator-key',
                      op_key)
            if res.returncode != 0:
                raise RuntimeError('%s: %s' % (' '.join(args), res.stderr))
        keys.append(key)
    return keys


def measured(nodes, leader, fn):
    """Runs fn(); returns its result, CPU seconds per voter (the leader first) and the
    leader's counter deltas."""
    order = [leader] + [nd for nd in nodes if nd is not leader]
    cpu0 = [proc_cpu_s(nd.proc.pid) for nd in order]
    c0 = raft_status(leader)['counters']
    out = fn()
    c1 = raft_status(leader)['counters']
    cpu = [proc_cpu_s(nd.proc.pid) - a for nd, a in zip(order, cpu0)]
    return out, cpu, {k: c1[k] - c0.get(k, 0) for k in c1 if isinstance(c1[k], int)}


def main():
    c = Cluster()
    rows = []
    try:
        nodes, leader, op_key, cid = cluster(c)
        keys = make_accounts(c, leader, op_key)
        for conc in LEVELS:
            kv, kv_cpu, kv_d = measured(nodes, leader, lambda: result_line(subprocess.run(
                [bench_prog('bench_kv_load'), leader.api, leader.token, str(conc),
                 str(KV_SECONDS)], stdout=subprocess.PIPE, text=True, check=True).stdout))
            lg, lg_cpu, lg_d = measured(nodes, leader, lambda: result_line(subprocess.run(
                [bench_prog('bench_ledger_load'), leader.api, leader.token, str(conc), str(COUNT),
                 cid] + keys, stdout=subprocess.PIPE, text=True, check=True).stdout))
            rows.append((conc, kv, kv_cpu, kv_d, lg, lg_cpu, lg_d))
        res = run('ledger', 'verify', '--json', '--api', leader.api, '--token', leader.token)
        verified = json.loads(res.stdout) if res.returncode == 0 else None
        if verified is None:
            raise RuntimeError('ledger verify failed after the run: %s' % res.stderr)
    finally:
        c.close()
    cores = os.cpu_count() or 1

    def row(name, a, b, ratio):
        print('%-60s %12s %12s %8s' % (name, a, b, '' if ratio is None else '%.2fx' % ratio))

    print('%-60s %12s %12s %8s' % ('metric', 'ledger', 'baseline', 'ratio'))
    for conc, kv, kv_cpus, kv_d, lg, lg_cpus, lg_d in rows:
        tps, vps, kvr = lg['rate'], lg['verify_per_s'], kv['rate']
        ok = max(lg['ok'], 1)
        lg_cpu, kv_cpu = sum(lg_cpus), sum(kv_cpus)
        verify_us = 1e6 / vps
        row('transfers/s, %d connections (vs raw Ed25519 verify/s, 1 core)' % conc,
            '%.0f/s' % tps, '%.0f/s' % vps, tps / vps)
        row('  (vs raw 3-node KV commits/s, same run and concurrency)', '%.0f/s' % tps,
            '%.0f/s' % kvr, tps / max(kvr, 1))
        ceiling = vps * cores / 3
        row('  (vs ceiling: %d cores / 3 voters x verify/s)' % cores, '%.0f/s' % tps,
            '%.0f/s' % ceiling, tps / ceiling)
        row('  node CPU per transfer, 3 voters (vs 3 verifies)', '%.0fus' % (lg_cpu * 1e6 / ok),
            '%.0fus' % (3 * verify_us), lg_cpu * 1e6 / ok / (3 * verify_us))
        row('  leader CPU per transfer (vs 1 verify)', '%.0fus' % (lg_cpus[0] * 1e6 / ok),
            '%.0fus' % verify_us, lg_cpus[0] * 1e6 / ok / verify_us)
        row('  follower CPU per transfer, mean (vs 1 verify)',
            '%.0fus' % (sum(lg_cpus[1:]) / 2 * 1e6 / ok), '%.0fus' % verify_us,
            sum(lg_cpus[1:]) / 2 * 1e6 / ok / verify_us)
        row('  one core per voter: leader-bound transfers/s (vs verify/s)',
            '%.0f/s' % (ok / max(lg_cpus[0], 1e-9)), '%.0f/s' % vps,
            ok / max(lg_cpus[0], 1e-9) / vps)
        row('  node CPU per KV commit, 3 voters (vs per transfer)',
            '%.0fus' % (kv_cpu * 1e6 / max(kv['ok'], 1)), '%.0fus' % (lg_cpu * 1e6 / ok),
            (kv_cpu / max(kv['ok'], 1)) / max(lg_cpu / ok, 1e-9))
        per_sync = lg_d.get('proposals', 0) / max(1, lg_d.get('synced_writes', 0))
        row('  transfers per leader synced write; p50/p99 latency', '%.1f' % per_sync,
            '%.0f/%.0fus' % (lg['p50_us'], lg['p99_us']), None)
        row('  accepted; rejected/errors', '%d' % lg['ok'],
            '%d/%d' % (lg['rejected'], lg['errors']), None)
    print('after the run: ledger verify ok, %d transactions, supply %d' % (
        verified['transactions'], verified['supply']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
