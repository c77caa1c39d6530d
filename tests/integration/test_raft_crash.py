"""kill -9 in a loop: a client writes sequential keys to a three-node cluster
while one node (chosen at random, leader included) is killed with -9 at a
random moment and restarted, ten times. Every node restarts cleanly each time
and every acknowledged write is present on every node at the end. A small
--raft-snapshot-every makes snapshots and compaction happen during the run."""
import random
import threading
import time
import unittest

from harness import Cluster, http, kv_path, raft_cluster, raft_leader, raft_status, wait_for

CYCLES = 10
EXTRA = ('--raft-tick-ms', '50', '--raft-snapshot-every', '200')


def writer(nodes, acked, stop):
    by_id = {n.id: n for n in nodes}
    target = nodes[0]
    i = 0
    while not stop.is_set():
        key, value = 'seq%05d' % i, 'v%d' % i
        try:
            code, body = http(target, 'PUT', kv_path(key), value.encode(), 2.0)
        except OSError:
            code, body = None, None
        if code == 200:
            acked.append((key, value))
            i += 1
            continue
        leader = (body or {}).get('leader')
        target = by_id.get(leader) or random.choice(nodes)
        time.sleep(0.02)


class RaftCrashLoopTest(unittest.TestCase):
    figures = []

    @classmethod
    def tearDownClass(cls):
        for f in cls.figures:
            print('figure: ' + f)

    def test_kill9_loop_keeps_acknowledged_writes(self):
        c = Cluster()
        ok = False
        try:
            nodes = raft_cluster(c, 3, *EXTRA)
            raft_leader(nodes)
            acked = []
            stop = threading.Event()
            t = threading.Thread(target=writer, args=(nodes, acked, stop))
            t.start()
            rng = random.Random(7)
            for cycle in range(CYCLES):
                time.sleep(rng.uniform(0.2, 1.0))
                victim = rng.choice(nodes)
                victim.kill9()
                time.sleep(rng.uniform(0.0, 0.5))
                victim.start_raft(nodes, *EXTRA)  # raises if it does not come up
            time.sleep(1.0)
            stop.set()
            t.join(10)
            self.assertGreater(len(acked), 100)
            leader = raft_leader(nodes, timeout=15)
            last_key, last_value = acked[-1]
            for n in nodes:
                wait_for(lambda: http(n, 'GET', kv_path(last_key, stale=True))[1].get('value')
                         == last_value, timeout=15, what='last write on %s' % n.name)
                for key, value in acked:
                    code, body = http(n, 'GET', kv_path(key, stale=True))
                    self.assertEqual((code, body.get('value')), (200, value),
                                     '%s on %s' % (key, n.name))
            snaps = sum(raft_status(n)['counters']['snapshots_made'] for n in nodes)
            self.figures.append('%d acknowledged writes over %d kill -9 cycles, all present on 3 '
                  'nodes; %d snapshots made' % (len(acked), CYCLES, snaps))
            self.assertGreater(raft_status(leader)['snapshot_index'], 0)
            ok = True
        finally:
            c.close(keep_on_failure=not ok)

    def test_lagging_follower_catches_up_by_snapshot(self):
        c = Cluster()
        ok = False
        try:
            extra = ('--raft-tick-ms', '50', '--raft-snapshot-every', '50')
            nodes = raft_cluster(c, 3, *extra)
            leader = raft_leader(nodes)
            lagger = next(n for n in nodes if n is not leader)
            lagger.kill9()
            for i in range(160):
                code, body = http(leader, 'PUT', kv_path('lag%d' % i), b'L%d' % i)
                self.assertEqual(code, 200, body)
            self.assertGreaterEqual(raft_status(leader)['snapshot_index'], 150)
            lagger.start_raft(nodes, *extra)
            wait_for(lambda: http(lagger, 'GET', kv_path('lag159', stale=True))[1].get('value')
                     == 'L159', timeout=15, what='lagging follower caught up')
            self.assertGreaterEqual(raft_status(lagger)['counters']['snapshots_installed'], 1)
            for i in range(0, 160, 7):
                code, body = http(lagger, 'GET', kv_path('lag%d' % i, stale=True))
                self.assertEqual((code, body.get('value')), (200, 'L%d' % i))
            # the installed snapshot survives a restart of the follower
            lagger.kill9()
            lagger.start_raft(nodes, *extra)
            code, body = http(lagger, 'GET', kv_path('lag3', stale=True))
            self.assertEqual((code, body.get('value')), (200, 'L3'))
            ok = True
        finally:
            c.close(keep_on_failure=not ok)

    def test_snapshot_larger_than_an_envelope_travels_in_chunks(self):
        c = Cluster()
        ok = False
        try:
            extra = ('--raft-tick-ms', '50', '--raft-snapshot-every', '4')
            nodes = raft_cluster(c, 3, *extra)
            leader = raft_leader(nodes)
            lagger = next(n for n in nodes if n is not leader)
            lagger.kill9()
            big = 512 * 1024
            for i in range(14):  # 7 MiB of values: the snapshot exceeds one 4 MiB envelope
                code, body = http(leader, 'PUT', kv_path('big%d' % i),
                                  (b'%02d' % i) * (big // 2), timeout=10)
                self.assertEqual(code, 200, body)
            lagger.start_raft(nodes, *extra)
            wait_for(lambda: http(lagger, 'GET', kv_path('big13', stale=True))[0] == 200,
                     timeout=20, what='follower installed the large snapshot')
            st = raft_status(lagger)['counters']
            self.assertGreaterEqual(st['snapshots_installed'], 1)
            self.assertGreater(st['chunks_received'], 4)
            code, body = http(lagger, 'GET', kv_path('big5', stale=True))
            self.assertEqual((code, body['value']), (200, '05' * (big // 2)))
            ok = True
        finally:
            c.close(keep_on_failure=not ok)


if __name__ == '__main__':
    unittest.main()
