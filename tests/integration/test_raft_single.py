"""One node started with --bootstrap is a cluster of one: it elects itself at
once, and put/get/delete work through the API and the CLI, linearizable and
?stale; the data survives kill -9 and a restart without --bootstrap."""
import json
import unittest

from harness import Cluster, http, kv_path, raft_status, run, wait_for


class RaftSingleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cls.n = cls.c.node('solo')
        cls.n.start('--bootstrap')
        wait_for(lambda: raft_status(cls.n)['role'] == 'leader', what='leader')

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def cli(self, *args):
        return run('kv', *args, '--api', self.n.api, '--data-dir', self.n.data_dir)

    def test_api_put_get_delete(self):
        code, body = http(self.n, 'PUT', kv_path('alpha'), b'one')
        self.assertEqual(code, 200, body)
        self.assertGreater(body['index'], 0)
        code, body = http(self.n, 'GET', kv_path('alpha'))
        self.assertEqual((code, body['value'], body['key']), (200, 'one', 'alpha'))
        code, body = http(self.n, 'GET', kv_path('alpha', stale=True))
        self.assertEqual((code, body['value']), (200, 'one'))
        code, body = http(self.n, 'DELETE', kv_path('alpha'))
        self.assertEqual(code, 200, body)
        code, body = http(self.n, 'GET', kv_path('alpha'))
        self.assertEqual(code, 404)
        self.assertIn('error', body)

    def test_limits_are_enforced(self):
        code, _ = http(self.n, 'PUT', kv_path('k' * 257), b'x')
        self.assertEqual(code, 400)
        code, _ = http(self.n, 'PUT', kv_path('big'), b'x' * (512 * 1024 + 1))
        self.assertEqual(code, 413)
        code, body = http(self.n, 'PUT', kv_path('max'), b'y' * (512 * 1024))
        self.assertEqual(code, 200, body)

    def test_cli_put_get_delete(self):
        r = self.cli('put', 'beta', 'hello world')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli('get', 'beta')
        self.assertEqual((r.returncode, r.stdout), (0, 'hello world\n'), r.stderr)
        r = self.cli('get', 'beta', '--stale', '--json')
        self.assertEqual(json.loads(r.stdout)['value'], 'hello world')
        r = self.cli('delete', 'beta')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli('get', 'beta')
        self.assertEqual(r.returncode, 1)
        self.assertIn('no such key', r.stderr)
        r = run('kv', '--help')
        self.assertEqual(r.returncode, 0)
        self.assertIn('--stale', r.stdout)
        self.assertIn('default: 127.0.0.1:7401', r.stdout)

    def test_status_has_raft(self):
        st = raft_status(self.n)
        self.assertEqual(st['role'], 'leader')
        self.assertEqual(st['leader'], self.n.id)
        self.assertEqual(st['voters'], [self.n.id])
        self.assertGreaterEqual(st['commit_index'], 1)
        self.assertEqual(st['learners'], [])

    def test_z_survives_kill9_and_restart(self):
        code, body = http(self.n, 'PUT', kv_path('durable'), b'kept')
        self.assertEqual(code, 200, body)
        self.n.kill9()
        self.n.start()  # no --bootstrap: the stored state is the cluster
        wait_for(lambda: raft_status(self.n)['role'] == 'leader', what='leader again')
        code, body = http(self.n, 'GET', kv_path('durable'))
        self.assertEqual((code, body['value']), (200, 'kept'))


if __name__ == '__main__':
    unittest.main()
