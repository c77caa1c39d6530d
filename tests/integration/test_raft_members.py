"""Membership through the API: a node started without --bootstrap and without
stored Raft state waits; POST /v1/raft/members on the leader adds it as a
learner (it receives the data but does not vote), then as a voter; a third
node joins as a voter; DELETE /v1/raft/members/ID removes it again.

The leader's own voter-set reconciliation (docs/join.md) would promote learners by
itself; --voters 1 keeps it out of the way so that this test drives every change.
A removed member that is still in the registry comes back as a learner (not a voter)."""
import os
import unittest

from harness import Cluster, http, kv_path, raft_leader, raft_status, wait_for


def add(leader, node, role):
    return leader.request('POST', '/v1/raft/members',
                          body={'id': node.id, 'address': node.bind, 'role': role})


class RaftMembersTest(unittest.TestCase):
    def test_add_learner_promote_add_voter_remove(self):
        c = Cluster()
        ok = False
        try:
            cid = os.urandom(16).hex()
            a, b, d = (c.node(n, cid) for n in ('a', 'b', 'd'))
            for n in (a, b, d):
                n.trust(a, b, d)
            g = ('--gossip-interval-ms', '200', '--voters', '1')
            a.start('--bootstrap', *g)
            wait_for(lambda: raft_status(a)['role'] == 'leader', what='a leads')
            b.start(*g, peers=[a])
            d.start(*g, peers=[a])
            self.assertEqual(raft_status(b)['voters'], [])  # waiting to be added
            b.kill9()  # a waiting node restarts fine and still waits
            b.start(*g, peers=[a])
            self.assertEqual(raft_status(b)['voters'], [])
            self.assertEqual(http(a, 'PUT', kv_path('before'), b'1')[0], 200)

            code, body = add(a, b, 'learner')
            self.assertEqual(code, 202, body)
            wait_for(lambda: raft_status(a)['learners'] == [b.id], what='b is a learner')
            wait_for(lambda: http(b, 'GET', kv_path('before', stale=True))[0] == 200,
                     what='learner b receives the data')
            self.assertEqual(raft_status(a)['voters'], [a.id])

            code, body = wait_for(lambda: (lambda r: r if r[0] == 202 else None)(
                add(a, b, 'voter')), what='promotion accepted')
            wait_for(lambda: sorted(raft_status(a)['voters']) == sorted([a.id, b.id]),
                     what='b is a voter')
            code, body = wait_for(lambda: (lambda r: r if r[0] == 202 else None)(
                add(a, d, 'voter')), what='d added')
            wait_for(lambda: len(raft_status(a)['voters']) == 3, what='three voters')
            leader = raft_leader([a, b, d])
            self.assertEqual(http(leader, 'PUT', kv_path('after'), b'2')[0], 200)
            for n in (a, b, d):
                wait_for(lambda: http(n, 'GET', kv_path('after', stale=True))[0] == 200,
                         what='after on %s' % n.name)
                # ids learnt through gossip show as node ids (public keys)
                wait_for(lambda: sorted(raft_status(n)['voters']) == sorted([a.id, b.id, d.id]),
                         what='voters by node id on %s' % n.name)

            code, body = add(leader, a, 'bogus')
            self.assertEqual(code, 400)
            victim = d if leader is not d else b
            code, body = wait_for(lambda: (lambda r: r if r[0] == 202 else None)(
                leader.request('DELETE', '/v1/raft/members/' + victim.id)), what='removal')
            wait_for(lambda: victim.id not in raft_status(leader)['voters'], what='removed')
            self.assertEqual(len(raft_status(leader)['voters']), 2)
            self.assertEqual(http(leader, 'PUT', kv_path('last'), b'3')[0], 200)
            ok = True
        finally:
            c.close(keep_on_failure=not ok)


if __name__ == '__main__':
    unittest.main()
