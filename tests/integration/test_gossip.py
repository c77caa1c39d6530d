"""Ten real nodes on loopback gossip over signed envelopes: all see each
other; a node killed with -9 is declared dead by the rest within the bound;
restarted with the same data directory it is alive again with a higher
incarnation; `nexus leave` shows as left, not dead."""
import os
import time
import unittest

from harness import Cluster, run, wait_for

N = 10
PERIOD_MS = 200
# Detection: the failed probe (period + timeout), then the suspicion timeout,
# which Lifeguard starts at suspicion_max_mult(6) * suspicion_mult(4) periods
# for N <= 10 and shrinks as other members confirm. Plus one period of spread.
DEAD_BOUND_S = (2 + 6 * 4 + 2) * PERIOD_MS / 1000.0


def members(node):
    return {m['id']: m for m in node.request('GET', '/v1/members')[1]['members']}


def state_everywhere(nodes, target, state):
    return all(members(n).get(target.id, {}).get('state') == state for n in nodes)


class GossipTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cid = os.urandom(16).hex()
        cls.nodes = [cls.c.node('n%d' % i, cid) for i in range(N)]
        for n in cls.nodes:
            n.trust(*cls.nodes)
        seed = cls.nodes[0]
        cls.args = ('--gossip-interval-ms', str(PERIOD_MS), '--ping-interval-ms', '1000')
        seed.start(*cls.args)
        for n in cls.nodes[1:]:
            n.start(*cls.args, peers=[seed])

    figures = []

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        for f in cls.figures:
            print('figure: ' + f)

    def test_1_all_see_each_other(self):
        wait_for(lambda: all(sum(m['state'] == 'alive' for m in members(n).values()) == N
                             for n in self.nodes), timeout=30, what='full view everywhere')
        m = members(self.nodes[3])[self.nodes[7].id]
        self.assertEqual(m['address'], self.nodes[7].bind)
        self.assertGreater(m['resources']['cpu_total_millicores'], 0)
        self.assertGreater(m['resources']['mem_total_bytes'], 0)

    def test_2_kill9_declared_dead_then_restart_alive_with_higher_incarnation(self):
        victim = self.nodes[5]
        rest = [n for n in self.nodes if n is not victim]
        wait_for(lambda: state_everywhere(rest, victim, 'alive'), timeout=30, what='victim alive')
        before = members(rest[0])[victim.id]['incarnation']
        victim.kill9()
        t0 = time.monotonic()
        wait_for(lambda: state_everywhere(rest, victim, 'dead'), timeout=DEAD_BOUND_S * 3,
                 interval=0.1, what='victim dead everywhere')
        took = time.monotonic() - t0
        GossipTest.figures.append('dead everywhere after %.2fs (bound %.2fs)' % (took, DEAD_BOUND_S))
        self.assertLessEqual(took, DEAD_BOUND_S)
        victim.start(*self.args, peers=[self.nodes[0]])
        wait_for(lambda: state_everywhere(rest, victim, 'alive'), timeout=30,
                 what='victim alive again')
        self.assertGreater(members(rest[0])[victim.id]['incarnation'], before)

    def test_3_leave_shows_left_not_dead(self):
        leaver = self.nodes[7]
        rest = [n for n in self.nodes if n is not leaver]
        wait_for(lambda: state_everywhere(rest, leaver, 'alive'), timeout=30, what='leaver alive')
        r = run('leave', '--api', leaver.api, '--data-dir', leaver.data_dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(leaver.proc.wait(15), 0)
        wait_for(lambda: state_everywhere(rest, leaver, 'left'), timeout=15, what='left everywhere')
        time.sleep(DEAD_BOUND_S)
        self.assertTrue(state_everywhere(rest, leaver, 'left'))

    def test_4_cli_members_prints_a_table(self):
        r = run('members', '--api', self.nodes[0].api, '--data-dir', self.nodes[0].data_dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('STATE', r.stdout)
        self.assertIn(self.nodes[1].id[:16], r.stdout)


if __name__ == '__main__':
    unittest.main()
