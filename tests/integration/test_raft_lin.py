"""Real-cluster linearizability: three nodes, several client threads doing
put/get/delete on a few keys over HTTP while the leader and then a follower
are killed with -9 and restarted. Every operation is recorded with its
invoke and return times and outcome (ok, fail when it certainly had no
effect, unknown when it timed out or the connection broke) in the lin_check
text format, and build/<variant>/tests/lin_check must accept the history."""
import os
import random
import subprocess
import threading
import time
import unittest

from harness import NEXUS, Cluster, http, kv_path, raft_cluster, raft_leader

CLIENTS = 5
KEYS = ['a', 'b', 'c']
RUN_S = 12.0
OP_TIMEOUT_S = 2.0
LIN_CHECK = os.path.join(os.path.dirname(os.path.abspath(NEXUS)), 'tests', 'lin_check')
DEFINITE_FAIL = ('not the leader', 'not committed', 'cannot propose', 'cannot read',
                 'leadership lost', 'timed out waiting for the leader')


def now_us():
    return time.monotonic_ns() // 1000


class Recorder:
    def __init__(self):
        self.lines = []
        self.lock = threading.Lock()

    def add(self, client, op, key, value, t0, t1, outcome):
        with self.lock:
            self.lines.append('%d %s %s %s %d %s %s' % (client, op, key, value, t0,
                                                        '-' if t1 is None else t1, outcome))


def classify(code, body):
    if code == 200:
        return 'ok'
    err = (body or {}).get('error', '')
    if code == 503 and any(err.startswith(p) for p in DEFINITE_FAIL):
        return 'fail'
    if code in (400, 404, 405, 413):
        return 'fail'
    return 'unknown'


def client_loop(cid, nodes, rec, stop, counts):
    rng = random.Random(cid)
    by_id = {n.id: n for n in nodes}
    target = nodes[cid % len(nodes)]
    seq = 0
    while not stop.is_set():
        key = rng.choice(KEYS)
        r = rng.random()
        op = 'put' if r < 0.45 else ('get' if r < 0.9 else 'delete')
        value = '%d.%d' % (cid, seq)
        seq += 1
        t0 = now_us()
        try:
            if op == 'put':
                code, body = http(target, 'PUT', kv_path(key), value.encode(), OP_TIMEOUT_S)
            elif op == 'delete':
                code, body = http(target, 'DELETE', kv_path(key), None, OP_TIMEOUT_S)
            else:
                code, body = http(target, 'GET', kv_path(key), None, OP_TIMEOUT_S)
        except OSError:
            rec.add(cid, op, key, value if op == 'put' else '-', t0, None, 'unknown')
            counts['unknown'] += 1
            target = rng.choice(nodes)
            time.sleep(0.02)
            continue
        t1 = now_us()
        if op == 'get':
            if code == 200:
                rec.add(cid, 'get', key, body['value'], t0, t1, 'ok')
            elif code == 404 and (body or {}).get('error') == 'no such key':
                rec.add(cid, 'get', key, '-', t0, t1, 'ok')
            else:
                rec.add(cid, 'get', key, '-', t0, t1, 'fail')
        else:
            out = classify(code, body)
            rec.add(cid, op, key, value if op == 'put' else '-', t0,
                    None if out == 'unknown' else t1, out)
        counts[classify(code, body) if not (op == 'get' and code == 404) else 'ok'] += 1
        if code == 503 and body and body.get('error') == 'not the leader':
            target = by_id.get(body.get('leader')) or rng.choice(nodes)
            time.sleep(0.01)


class RaftLinearizabilityTest(unittest.TestCase):
    figures = []

    @classmethod
    def tearDownClass(cls):
        for f in cls.figures:
            print('figure: ' + f)

    def test_history_with_leader_and_follower_kill9_is_linearizable(self):
        self.assertTrue(os.path.exists(LIN_CHECK), LIN_CHECK)
        c = Cluster()
        ok = False
        try:
            nodes = raft_cluster(c, 3, '--raft-tick-ms', '50')
            raft_leader(nodes)
            rec = Recorder()
            stop = threading.Event()
            counts = {'ok': 0, 'fail': 0, 'unknown': 0}
            threads = [threading.Thread(target=client_loop, args=(i, nodes, rec, stop, counts))
                       for i in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(RUN_S * 0.2)
            victim = raft_leader(nodes)
            victim.kill9()
            time.sleep(RUN_S * 0.2)
            victim.start_raft(nodes, '--raft-tick-ms', '50')
            time.sleep(RUN_S * 0.1)
            leader = raft_leader(nodes)
            victim = next(n for n in nodes if n is not leader)
            victim.kill9()
            time.sleep(RUN_S * 0.2)
            victim.start_raft(nodes, '--raft-tick-ms', '50')
            time.sleep(RUN_S * 0.3)
            stop.set()
            for t in threads:
                t.join(10)
            path = os.path.join(c.workdir, 'history.txt')
            with open(path, 'w') as f:
                f.write('# %d clients, keys %s, leader and follower kill -9\n' % (
                    CLIENTS, ','.join(KEYS)))
                f.write('\n'.join(rec.lines) + '\n')
            r = subprocess.run([LIN_CHECK, path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=120)
            self.figures.append('%d ops (%s); lin_check: %s' % (len(rec.lines), counts,
                                                         r.stdout.strip().replace('\n', '; ')))
            self.assertGreater(counts['ok'], 100, counts)
            self.assertEqual(r.returncode, 0, r.stdout + '\nhistory kept in ' + path)
            ok = True
        finally:
            c.close(keep_on_failure=not ok)


if __name__ == '__main__':
    unittest.main()
