"""Three real nodes on loopback with static bootstrap (each started with
--bootstrap and the other two as --peer): one leader is elected, writes on
the leader are readable everywhere, a follower forwards requests to the
leader over the mesh and relays the answers, kill -9 of the leader elects a
new one within a measured bound and keeps every acknowledged write, and a
damaged data directory makes a node refuse to start with a one-line error."""
import os
import time
import unittest

from harness import (Cluster, NEXUS, http, kv_path, raft_cluster, raft_leader, raft_status, run,
                     wait_for)
import subprocess

TICK_MS = 50
# Election timeout is 6..12 ticks (300..600 ms); PreVote adds a round trip and
# CheckQuorum makes followers wait a full timeout after the last heartbeat.
FAILOVER_BOUND_S = 3.0


def put_anywhere(nodes, key, value, timeout=10.0):
    """PUT following 'not the leader' answers; returns the reply body of the success."""
    by_id = {n.id: n for n in nodes}
    deadline = time.monotonic() + timeout
    target = nodes[0]
    while time.monotonic() < deadline:
        try:
            code, body = http(target, 'PUT', kv_path(key), value.encode())
        except OSError:
            code, body = None, None
        if code == 200:
            return body
        leader = (body or {}).get('leader')
        target = by_id.get(leader) or nodes[(nodes.index(target) + 1) % len(nodes)]
        if target.proc is None or target.proc.poll() is not None:
            target = nodes[(nodes.index(target) + 1) % len(nodes)]
        time.sleep(0.05)
    raise AssertionError('put %s did not succeed' % key)


class RaftClusterTest(unittest.TestCase):
    figures = []

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cls.nodes = raft_cluster(cls.c, 3, '--raft-tick-ms', str(TICK_MS))

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        for f in cls.figures:
            print('figure: ' + f)

    def test_1_one_leader_and_replication(self):
        leader = raft_leader(self.nodes)
        st = raft_status(leader)
        self.assertEqual(sorted(st['voters']), sorted(n.id for n in self.nodes))
        for i in range(20):
            code, body = http(leader, 'PUT', kv_path('k%d' % i), b'v%d' % i)
            self.assertEqual(code, 200, body)
        for n in self.nodes:
            wait_for(lambda: http(n, 'GET', kv_path('k19', stale=True))[1].get('value') == 'v19',
                     what='k19 on %s' % n.name)
            code, body = http(n, 'GET', kv_path('k7', stale=True))
            self.assertEqual((code, body['value']), (200, 'v7'))

    def test_2_follower_forwards_to_leader(self):
        leader = raft_leader(self.nodes)
        follower = next(n for n in self.nodes if n is not leader)
        before = raft_status(follower)['counters']['forwarded']
        code, body = http(follower, 'PUT', kv_path('via'), b'follower')
        self.assertEqual(code, 200, body)
        code, body = http(follower, 'GET', kv_path('via'))
        self.assertEqual((code, body.get('value')), (200, 'follower'))
        code, body = http(follower, 'DELETE', kv_path('via'))
        self.assertEqual(code, 200, body)
        code, body = http(follower, 'GET', kv_path('via'))
        self.assertEqual((code, body.get('error')), (404, 'no such key'))
        self.assertEqual(raft_status(follower)['counters']['forwarded'], before + 4)
        self.assertGreaterEqual(raft_status(leader)['counters']['forwards_served'], 4)
        r = run('kv', 'put', 'cli-via', 'f', '--api', follower.api, '--data-dir',
                follower.data_dir)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_3_kill9_leader_new_leader_and_writes_survive(self):
        leader = raft_leader(self.nodes)
        acked = {}
        for i in range(30):
            body = put_anywhere(self.nodes, 'acked%d' % i, 'x%d' % i)
            acked['acked%d' % i] = 'x%d' % i
        leader.kill9()
        t0 = time.monotonic()
        rest = [n for n in self.nodes if n is not leader]
        new = raft_leader(rest, timeout=10)
        took = time.monotonic() - t0
        RaftClusterTest.figures.append('new leader %.3fs after kill -9 of the leader (bound %.1fs)'
                                       % (took, FAILOVER_BOUND_S))
        self.assertLessEqual(took, FAILOVER_BOUND_S)
        self.assertIsNot(new, leader)
        for k, v in acked.items():
            code, body = http(new, 'GET', kv_path(k))
            self.assertEqual((code, body.get('value')), (200, v), k)
        put_anywhere(rest, 'after', 'failover')
        leader.start_raft(self.nodes, '--raft-tick-ms', str(TICK_MS))
        wait_for(lambda: http(leader, 'GET', kv_path('after', stale=True))[1].get('value')
                 == 'failover', what='restarted node catches up')

    def test_4_damaged_storage_refuses_to_start(self):
        victim = self.nodes[2]
        victim.stop()
        db = os.path.join(victim.data_dir, 'db')
        os.remove(os.path.join(db, 'CURRENT'))
        r = self.start_fails(victim)
        self.assertIn('storage', r)
        # Truncated SST/WAL files: damage every table and log file.
        victim2 = self.nodes[1]
        victim2.stop()
        db2 = os.path.join(victim2.data_dir, 'db')
        damaged = 0
        for name in os.listdir(db2):
            if name.endswith('.log') or name.endswith('.sst'):
                p = os.path.join(db2, name)
                size = os.path.getsize(p)
                if size > 64:
                    with open(p, 'r+b') as f:
                        f.seek(size // 2)
                        f.write(b'\xde\xad\xbe\xef' * 8)
                    damaged += 1
        self.assertGreater(damaged, 0)
        self.start_fails(victim2)

    def start_fails(self, node):
        args = [NEXUS, 'node', '--data-dir', node.data_dir, '--bind', node.bind, '--api',
                node.api]
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=20)
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertGreater(p.returncode, 0, 'crashed with a signal: ' + p.stderr)
        last = p.stderr.strip().splitlines()[-1]
        self.assertTrue(last.startswith('nexus: '), p.stderr)
        RaftClusterTest.figures.append('refused: ' + last[:160])
        return last


if __name__ == '__main__':
    unittest.main()
