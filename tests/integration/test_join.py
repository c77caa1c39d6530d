"""Join by token, registry-backed trust and the self-healing voter set (issue 6).

Every cluster here starts from one `--bootstrap` node; everyone else comes in with
`nexus node --join HOST:PORT --token T` and nothing else: no trust file, no --peer.
"""
import os
import subprocess
import time
import unittest

from harness import Cluster, NEXUS, http, kv_path, raft_leader, raft_status, run, wait_for

FAST = ('--gossip-interval-ms', '200', '--ping-interval-ms', '200')


def operator_key(node):
    return os.path.join(node.data_dir, 'operator.key')


def make_token(member, op_node, uses=1, ttl='10m'):
    out = run('token', 'create', '--api', member.api, '--data-dir', member.data_dir,
              '--operator-key', operator_key(op_node), '--uses', str(uses), '--ttl', ttl)
    assert out.returncode == 0, out.stderr
    tok = out.stdout.strip()
    assert tok.startswith('nxj1.') and len(tok.split('.')) == 6, tok
    return tok


def join_args(node, member, tok, *extra):
    return [NEXUS, 'node', '--data-dir', node.data_dir, '--bind', node.bind, '--api', node.api,
            '--join', member.bind, '--token', tok] + list(FAST) + list(extra)


def refused_join(cluster, name, member, tok, timeout='5s'):
    """Runs a join that must fail; returns its stderr."""
    n = cluster.node(name)
    p = subprocess.run(join_args(n, member, tok, '--join-timeout', timeout),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stderr)
    return p.stderr


def voters(node):
    return raft_status(node)['voters']


class JoinTest(unittest.TestCase):
    def setUp(self):
        self.c = Cluster()
        self.addCleanup(self.c.close)

    def bootstrap(self, *extra):
        a = self.c.node('a')
        a.start('--bootstrap', *(FAST + extra))
        wait_for(lambda: a.request('GET', '/v1/ledger/genesis')[0] == 200, timeout=20,
                 what='genesis')
        return a

    def join(self, name, member, tok, *extra):
        n = self.c.node(name)
        n.start('--join', member.bind, '--token', tok, *(FAST + extra))
        return n

    def test_nodes_join_by_token_and_serve_the_registry(self):
        a = self.bootstrap('--raft-snapshot-every', '50')
        for i in range(120):  # enough for a snapshot: b gets the state that way
            self.assertEqual(http(a, 'PUT', kv_path('k%d' % i), b'v')[0], 200)
        tok = make_token(a, a, uses=2)
        b = self.join('b', a, tok, '--raft-snapshot-every', '50')
        c = self.join('c', a, tok)
        wait_for(lambda: raft_status(b)['counters']['snapshots_installed'] >= 1, timeout=20,
                 what='b installs a snapshot')
        self.assertEqual(http(b, 'GET', kv_path('k119', stale=True))[1]['value'], 'v')
        ids = {a.id, b.id, c.id}
        wait_for(lambda: set(voters(a)) == ids, timeout=30, what='three voters')
        for n in (a, b, c):
            wait_for(lambda n=n: raft_status(n)['registry']['members'] == 3, timeout=20,
                     what='registry on %s' % n.name)
        # Gossip carries everyone's Raft role; nobody is left without one.
        def roles_known():
            code, body = c.request('GET', '/v1/members')
            return code == 200 and len(body['members']) == 3 and all(
                m['raft_role'] in ('leader', 'follower') for m in body['members'])
        wait_for(roles_known, timeout=20, what='roles in gossip')
        # The ledger works through a joined node and verifies on every member.
        key = os.path.join(self.c.workdir, 'alice.key')
        out = run('account', 'create', 'alice', '--api', c.api, '--data-dir', c.data_dir,
                  '--operator-key', operator_key(a), '--key-file', key)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run('ledger', 'mint', '--to', 'alice', '--amount', '100', '--api', b.api,
                  '--data-dir', b.data_dir, '--operator-key', operator_key(a))
        self.assertEqual(out.returncode, 0, out.stderr)
        for n in (a, b, c):
            out = run('ledger', 'balance', 'alice', '--api', n.api, '--data-dir', n.data_dir)
            self.assertEqual(out.stdout.strip(), '100', out.stderr)
            out = run('ledger', 'verify', '--api', n.api, '--data-dir', n.data_dir)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        # A joined node restarts with the same command line: the join is not repeated.
        self.assertTrue(os.path.exists(os.path.join(c.data_dir, 'join.seed')))
        c.kill9()
        c.start('--join', a.bind, '--token', tok, *FAST)
        wait_for(lambda: raft_status(c)['applied_index'] >= raft_status(a)['commit_index'] - 5,
                 timeout=20, what='c caught up after restart')
        self.assertIn('join_ignored', c.read_log())

    def test_registry_reads_tenants_and_permissions(self):
        a = self.bootstrap()
        common = ('--api', a.api, '--data-dir', a.data_dir)
        owner = os.path.join(self.c.workdir, 'owner.key')
        out = run('account', 'create', 'olga', '--key-file', owner, *common)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run('tenant', 'create', 'acme', '--owner-key', owner, *common)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run('tenant', 'create', 'acme', *common)
        self.assertEqual(out.returncode, 1)
        self.assertIn('exists', out.stderr)
        # The owner (not the operator) grants on its tenant; a bad subject is a usage error.
        out = run('perm', 'grant', 'account.create', 'acme', '--subject', a.id, '--key-file',
                  owner, *common)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run('perm', 'grant', 'account.create', '*', '--subject', a.id, '--key-file', owner,
                  *common)
        self.assertEqual(out.returncode, 1)
        self.assertIn('permission denied', out.stderr)
        out = run('perm', 'revoke', 'account.create', 'acme', '--subject', a.id, *common)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run('perm', 'grant', 'x', 'y', '--subject', 'nonsense', *common)
        self.assertNotEqual(out.returncode, 0)
        out = run('ledger', 'tenants', *common)
        self.assertIn('acme', out.stdout)
        out = run('ledger', 'nodes', *common)
        self.assertIn(a.id + '  member', out.stdout)
        out = run('ledger', 'audit', '--limit', '1000', *common)
        self.assertIn('perm.grant', out.stdout)
        self.assertIn('perm.revoke', out.stdout)
        self.assertIn('permission denied', out.stdout)

    def test_refused_tokens_get_a_clear_error_and_are_counted(self):
        a = self.bootstrap()
        tok = make_token(a, a, uses=1)
        self.join('b', a, tok)
        err = refused_join(self.c, 'used', a, tok)
        self.assertIn('join token used up', err)
        short = make_token(a, a, uses=5, ttl='1s')
        time.sleep(1.5)
        self.assertIn('join token expired', refused_join(self.c, 'late', a, short))
        good = make_token(a, a, uses=5).split('.')
        secret = good[4]
        good[4] = ('a' if secret[0] != 'a' else 'b') + secret[1:]
        self.assertIn('does not verify', refused_join(self.c, 'forged', a, '.'.join(good)))
        other = make_token(a, a, uses=5).split('.')
        other[1] = os.urandom(16).hex()
        err = refused_join(self.c, 'other', a, '.'.join(other), timeout='2s')
        self.assertIn('token of its cluster', err)
        st = a.status()
        refused = st['join']['refused']
        self.assertEqual(refused.get('join token used up'), 1, st['join'])
        self.assertEqual(refused.get('join token expired'), 1, st['join'])
        self.assertEqual(refused.get('join token proof does not verify'), 1, st['join'])
        self.assertGreaterEqual(st['counters']['mesh']['guest_wrong_cluster'], 1)
        log = a.read_log()
        self.assertIn('join_refused', log)
        self.assertIn('reason="other cluster"', log)
        # Garbage instead of a token: refused before anything is sent.
        out = run('node', '--data-dir', os.path.join(self.c.workdir, 'g'), '--join', a.bind,
                  '--token', 'nxj1.nonsense')
        self.assertEqual(out.returncode, 2)
        self.assertIn('not a join token', out.stderr)

    def test_a_single_use_token_admits_exactly_one_of_two_racers(self):
        a = self.bootstrap()
        tok = make_token(a, a, uses=1)
        racers = [self.c.node('r1'), self.c.node('r2')]
        errs = [open(os.path.join(self.c.workdir, n.name + '.err'), 'w+') for n in racers]
        for f in errs:
            self.addCleanup(f.close)
        procs = [subprocess.Popen(join_args(n, a, tok, '--join-timeout', '15s'),
                                  stdout=subprocess.DEVNULL, stderr=f)
                 for n, f in zip(racers, errs)]
        for n, p in zip(racers, procs):
            n.proc = p
        wait_for(lambda: any(p.poll() is not None for p in procs), timeout=30,
                 what='one racer refused')
        loser = [p for p in procs if p.poll() is not None]
        self.assertEqual(len(loser), 1)
        self.assertEqual(loser[0].returncode, 1)
        lost = procs.index(loser[0])
        errs[lost].seek(0)
        self.assertIn('join token used up', errs[lost].read())
        winner = [n for n, p in zip(racers, procs) if p.poll() is None][0]
        wait_for(winner.health, timeout=15, what='winner API')
        wait_for(lambda: raft_status(a)['registry']['members'] == 2, timeout=10,
                 what='two members')

    def test_a_dead_voter_is_replaced_and_writes_continue(self):
        a = self.bootstrap('--voter-grace-ms', '1000')
        tok = make_token(a, a, uses=3)
        nodes = [a] + [self.join(n, a, tok, '--voter-grace-ms', '1000') for n in 'bcd']
        def three_voters_one_learner():
            st = raft_status(raft_leader(nodes))
            return len(st['voters']) == 3 and len(st['learners']) == 1 and st
        st = wait_for(three_voters_one_learner, timeout=40, what='3 voters + 1 learner')
        leader = raft_leader(nodes)
        learner = st['learners'][0]
        victim = [n for n in nodes if n.id in st['voters'] and n is not leader][0]
        victim.kill9()
        t0 = time.monotonic()
        alive = [n for n in nodes if n is not victim]
        def replaced():
            st = raft_status(raft_leader(alive))
            return victim.id not in st['voters'] and learner in st['voters'] and \
                len(st['voters']) == 3
        wait_for(replaced, timeout=40, interval=0.1, what='the dead voter replaced')
        print('\n  dead voter replaced after %.1f s (grace 1 s, gossip period 200 ms)'
              % (time.monotonic() - t0))
        leader = raft_leader(alive)
        code, body = http(leader, 'PUT', kv_path('after-replacement'), b'yes')
        self.assertEqual(code, 200, body)
        # Losing one more voter keeps a quorum: 3 voters, 2 alive.
        other = [n for n in alive if n is not leader and n.id in raft_status(leader)['voters']][0]
        other.kill9()
        survivors = [n for n in alive if n is not other]
        code, body = http(raft_leader(survivors, timeout=20), 'PUT', kv_path('k2'), b'v2')
        self.assertEqual(code, 200, body)

    def test_a_removed_node_is_refused_by_every_member(self):
        a = self.bootstrap()
        tok = make_token(a, a, uses=3)
        nodes = [a] + [self.join(n, a, tok) for n in 'bcd']
        wait_for(lambda: all(raft_status(n)['registry']['members'] == 4 for n in nodes),
                 timeout=30, what='registry everywhere')
        victim, rest = nodes[3], nodes[:3]
        t0 = time.monotonic()
        out = run('members', 'remove', victim.id, '--api', a.api, '--data-dir', a.data_dir,
                  '--operator-key', operator_key(a))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        t_applied = time.monotonic()
        wait_for(lambda: all(raft_status(n)['registry']['removed'] == 1 for n in rest),
                 timeout=10, interval=0.005, what='removal applied on every member')
        t_all = time.monotonic()
        print('\n  removal: committed in %.0f ms, revoked on all %d members %.0f ms after the '
              'commit' % (1000 * (t_applied - t0), len(rest), 1000 * (t_all - t_applied)))
        # Its messages are refused from then on, and Raft drops it.
        def refused():
            return any(n.status()['counters']['transport']['dropped_untrusted'] +
                       n.status()['counters']['transport']['refused_handshake'] +
                       n.status()['counters']['envelope']['unknown_sender'] > 0 for n in rest)
        wait_for(refused, timeout=10, what="the removed node's traffic refused")
        wait_for(lambda: victim.id not in voters(raft_leader(rest)) and
                 victim.id not in raft_status(raft_leader(rest))['learners'],
                 timeout=20, what='removed from Raft')


if __name__ == '__main__':
    unittest.main()
