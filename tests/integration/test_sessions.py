"""Stateful sessions across the mesh (issue 7): three nodes (one bootstrap, two joined by
token). A session of the wordcount-py example keeps a running total in its context; calls
go through different members; the node that ran the last call is killed -9 and the next
call continues elsewhere from the replicated checkpoint, with the total intact. Each call
is charged once to the session's account."""
import json
import os
import time
import unittest

from harness import Cluster, http, kv_path, run, token_cluster, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, '..', '..', 'examples', 'agents')
FAST = ('--gossip-interval-ms', '200', '--ping-interval-ms', '200', '--cpu-millicores', '4000',
        '--mem-mb', '8192')


def cli(node, *args, timeout=60):
    return run(*args, '--api', node.api, '--data-dir', node.data_dir, timeout=timeout)


class SessionsTest(unittest.TestCase):
    def setUp(self):
        self.c = Cluster()
        self.addCleanup(self.c.close)
        nodes, self.op = token_cluster(self.c, [FAST] * 3)
        self.nodes = nodes
        a = nodes[0]
        for d in ('wordcount-py', 'hello-sh'):
            out = cli(a, 'agent', 'publish', os.path.join(EXAMPLES, d), '--operator-key', self.op)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        # every member copies the published bundles in the background
        wait_for(lambda: all(n.status()['agents']['bundles_replicated'] >= 2 for n in nodes[1:]),
                 timeout=30, what='bundles replicated to the joined members')
        key = os.path.join(self.c.workdir, 'payer.key')
        out = cli(a, 'account', 'create', 'payer', '--key-file', key, '--operator-key', self.op)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = cli(a, 'ledger', 'mint', '--to', 'payer', '--amount', '100000', '--operator-key',
                  self.op)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = cli(a, 'account', 'create', 'default', '--key-file',
                  os.path.join(self.c.workdir, 'default.key'), '--operator-key', self.op)
        self.assertEqual(out.returncode, 0, out.stderr)

    def send(self, node, sid, text, attempts=8):
        """One call; retried while the cluster elects a leader or places elsewhere."""
        for _ in range(attempts):
            out = cli(node, 'session', 'send', sid, '--input', json.dumps(text), '--json')
            if out.returncode == 0:
                return json.loads(out.stdout)
            time.sleep(0.5)
        self.fail('session send failed: %s %s' % (out.stdout, out.stderr))

    def balance(self, node):
        out = cli(node, 'ledger', 'balance', 'payer')
        return int(out.stdout.strip())

    def test_a_session_survives_the_death_of_the_node_that_ran_it(self):
        a, b, c = self.nodes
        out = cli(b, 'session', 'open', 'wordcount-py', '--account', 'payer')
        self.assertEqual(out.returncode, 0, out.stderr)
        sid = out.stdout.strip()
        self.assertTrue(sid.startswith('s-'), sid)
        r1 = self.send(b, sid, 'one two three')
        self.assertEqual(r1['output']['total'], 3)
        self.assertEqual(r1['call'], 1)
        self.assertNotIn('context', r1)  # the state stays in the cluster
        r2 = self.send(c, sid, 'four five')
        self.assertEqual(r2['output'], {'words': 2, 'total': 5, 'calls': 2})
        self.assertIn('charge', r2)
        paid = 100000 - self.balance(a)
        self.assertGreaterEqual(paid, 2)  # at least 1 per call
        # The node that ran the last call dies; the next call resumes from the checkpoint.
        victim = [n for n in self.nodes if n.id == r2['node']][0]
        victim.kill9()
        alive = [n for n in self.nodes if n is not victim]
        t0 = time.monotonic()
        r3 = self.send(alive[0], sid, 'six')
        print('\n  call after kill -9 of %s answered in %.1f s on %s' % (
            victim.name, time.monotonic() - t0, r3['node'][:16]))
        self.assertNotEqual(r3['node'], victim.id)
        self.assertEqual(r3['output'], {'words': 1, 'total': 6, 'calls': 3})
        out = cli(alive[1], 'session', 'show', sid, '--json')
        rec = json.loads(out.stdout)
        self.assertEqual(rec['calls'], 3)
        self.assertEqual(rec['context'], {'total': 6, 'calls': 3})
        out = cli(alive[1], 'session', 'close', sid)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = cli(alive[0], 'session', 'send', sid, '--input', '"seven"')
        self.assertEqual(out.returncode, 1)
        self.assertIn('no such session', out.stderr)

    def test_sessions_refuse_what_they_cannot_serve(self):
        a = self.nodes[0]
        out = cli(a, 'session', 'open', 'hello-sh')
        self.assertEqual(out.returncode, 1)
        self.assertIn('sessions are for stateful agents', out.stderr)
        out = cli(a, 'session', 'open', 'nosuch')
        self.assertIn('no agent nosuch', out.stderr)
        out = cli(a, 'agent', 'run', 'wordcount-py', '--input', '"x"')
        self.assertEqual(out.returncode, 1)
        self.assertIn('open a session', out.stderr)
        out = cli(a, 'session', 'send', 's-0000000000000000', '--input', '1')
        self.assertIn('no such session', out.stderr)
        out = cli(a, 'session', 'send', 'nonsense', '--input', '1')
        self.assertIn('no such session', out.stderr)
        out = cli(a, 'session', 'frobnicate', 'x')
        self.assertEqual(out.returncode, 2)
        # the records behind sessions and deployments are not writable through /v1/kv
        code, body = http(a, 'PUT', kv_path('_session/s-0000000000000000'), b'{}')
        self.assertEqual(code, 403, body)


if __name__ == '__main__':
    unittest.main()
