"""Multi-process tests of the foundation: identity on disk, CLI contract,
HTTP API auth, two nodes pinging over CURVE with signed envelopes, an
untrusted node refused at the transport, and kill -9 keeping the identity."""
import json
import os
import urllib.error
import stat
import time
import unittest

from harness import Cluster, run, wait_for

CLUSTER_ID = '00112233445566778899aabbccddeeff'


class IdentityTest(unittest.TestCase):
    def setUp(self):
        self.c = Cluster()

    def tearDown(self):
        self.c.close()

    def test_init_creates_key_and_token_with_mode_0600(self):
        n = self.c.node('a')
        for name in ('node.key', 'operator.token'):
            mode = stat.S_IMODE(os.stat(os.path.join(n.data_dir, name)).st_mode)
            self.assertEqual(mode, 0o600, name)
        self.assertRegex(n.id, '^[0-9a-f]{64}$')

    def test_node_refuses_key_readable_by_others(self):
        n = self.c.node('a', CLUSTER_ID)
        os.chmod(os.path.join(n.data_dir, 'node.key'), 0o644)
        r = run('node', '--data-dir', n.data_dir, '--bind', n.bind, '--api', n.api)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('readable by others', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_corrupt_and_truncated_key_give_clear_error(self):
        n = self.c.node('a', CLUSTER_ID)
        path = os.path.join(n.data_dir, 'node.key')
        with open(path) as f:
            good = f.read()
        for bad in (good[:40], good.replace('seed=', 'seed=0', 1)[:len(good)],
                    good[:30] + ('1' if good[30] != '1' else '2') + good[31:], '', 'garbage'):
            with open(path, 'w') as f:
                f.write(bad)
            r = run('node', '--data-dir', n.data_dir, '--bind', n.bind, '--api', n.api)
            self.assertNotEqual(r.returncode, 0, bad)
            self.assertIn('corrupt', r.stderr)

    def test_node_without_cluster_says_how_to_start_one(self):
        n = self.c.node('a')
        r = run('node', '--data-dir', n.data_dir, '--bind', n.bind, '--api', n.api)
        self.assertEqual(r.returncode, 1)
        self.assertIn('--bootstrap', r.stderr)


class CliTest(unittest.TestCase):
    def test_help_lists_every_command_and_option_with_defaults(self):
        r = run('--help')
        self.assertEqual(r.returncode, 0)
        for word in ('node', 'status', 'init', '--data-dir', '--bind', '--api', '--bootstrap',
                     '--join', '--dev', '--json', '(default: 127.0.0.1:7400)'):
            self.assertIn(word, r.stdout)
        r = run('node', '--help')
        self.assertEqual(r.returncode, 0)
        self.assertIn('--log-level LEVEL', r.stdout)
        self.assertIn('(default: info)', r.stdout)

    def test_bad_flag_is_one_line_error(self):
        for args in (('node', '--bogus'), ('status', '--api'), ('frobnicate',),
                     ('node', '--log-level', 'loud'), ('node', '--bind', 'nohostport'),
                     ('node', '--ping-interval-ms', '-5')):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, (args, r.stderr))
            self.assertTrue(r.stderr.startswith('nexus: '), r.stderr)

    def test_bad_config_file_is_one_line_error(self):
        c = Cluster()
        try:
            path = os.path.join(c.workdir, 'bad.json')
            for text in ('{"bind": ', '{"no_such_option": 1}', '[1,2]', '{"bind": [1]}'):
                with open(path, 'w') as f:
                    f.write(text)
                r = run('node', '--config', path)
                self.assertEqual(r.returncode, 2, text)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
                self.assertIn('config file', r.stderr)
        finally:
            c.close()

    def test_unreachable_node_is_one_line_error(self):
        from harness import free_port
        r = run('status', '--api', '127.0.0.1:%d' % free_port(), '--token', 'x')
        self.assertEqual(r.returncode, 1)
        self.assertIn('cannot reach node', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cls.n = cls.c.node('a', CLUSTER_ID).start()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def test_health_needs_no_token(self):
        self.assertEqual(self.n.request('GET', '/v1/health', token=None), (200, {'status': 'ok'}))

    def test_status_needs_the_operator_token(self):
        code, body = self.n.request('GET', '/v1/status', token=None)
        self.assertEqual(code, 401)
        self.assertIn('token', body['error'])
        code, body = self.n.request('GET', '/v1/status', token='nxo_' + '0' * 64)
        self.assertEqual(code, 401)

    def test_status_fields(self):
        st = self.n.status()
        self.assertEqual(st['node_id'], self.n.id)
        self.assertEqual(st['cluster_id'], CLUSTER_ID)
        for k in ('uptime_s', 'version', 'peer_count'):
            self.assertIn(k, st)

    def test_unknown_path_and_method_are_json_errors(self):
        code, body = self.n.request('GET', '/v1/nope')
        self.assertEqual(code, 404)
        self.assertIn('error', body)
        code, body = self.n.request('POST', '/v1/status', body={})
        self.assertEqual(code, 405)

    def test_oversized_body_is_refused_with_413(self):
        import urllib.request
        req = urllib.request.Request('http://%s/v1/status' % self.n.api, method='POST',
                                     data=b'x' * (2 << 20))
        req.add_header('Authorization', 'Bearer ' + self.n.token)
        try:
            urllib.request.urlopen(req, timeout=10)
            self.fail('accepted a 2 MiB body')
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 413)
            self.assertIn('larger than', json.loads(e.read())['error'])
        self.assertTrue(self.n.health())

    def test_garbage_on_the_api_port_does_not_hurt_the_node(self):
        import socket
        host, port = self.n.api.split(':')
        for junk in (b'\x00' * 1000, b'GET / HTTP/9.9\r\n\r\n', b'\xff\xfe' * 5000,
                     b'POST /v1/kv/x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n'):
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                try:
                    s.recv(4096)
                except OSError:
                    pass
        self.assertTrue(self.n.health())

    def test_cli_status_reads_token_from_data_dir(self):
        r = run('status', '--api', self.n.api, '--data-dir', self.n.data_dir, '--json')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)['node_id'], self.n.id)
        r = run('status', env={'NEXUS_API': self.n.api, 'NEXUS_TOKEN': self.n.token})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.n.id, r.stdout)


class MeshTest(unittest.TestCase):
    def setUp(self):
        self.c = Cluster()
        self.a = self.c.node('a', CLUSTER_ID)
        self.b = self.c.node('b', CLUSTER_ID)
        self.a.trust(self.b)
        self.b.trust(self.a)

    def tearDown(self):
        self.c.close()

    def pongs(self, node, peer):
        for p in node.status()['peers']:
            if p['id'] == peer.id:
                return p['pongs']
        return 0

    def test_two_nodes_exchange_signed_pings(self):
        self.a.start(peers=[self.b])
        self.b.start(peers=[self.a])
        wait_for(lambda: self.pongs(self.a, self.b) >= 3 and self.pongs(self.b, self.a) >= 3,
                 what='pongs both ways')
        st = self.a.status()
        self.assertEqual(st['peer_count'], 1)
        self.assertGreater(st['counters']['envelope']['accepted'], 0)
        self.assertEqual(st['counters']['envelope']['bad_sig'], 0)
        self.assertIsNotNone(st['peers'][0]['rtt_us'])

    def test_untrusted_node_is_refused(self):
        # Members admit unknown keys as guests (rate-limited) so that joiners can reach
        # them; a guest gets exactly one message type through, JOIN_REQUEST. The
        # intruder's pings are refused by the envelope verifier and counted.
        intruder = self.c.node('intruder', CLUSTER_ID)
        intruder.trust(self.a)
        self.a.start(peers=[self.b])
        self.b.start(peers=[self.a])
        intruder.start(peers=[self.a])
        def refused():
            c = self.a.status()['counters']
            return c['transport']['refused_handshake'] + c['envelope']['unknown_sender'] > 0
        wait_for(refused, what='the intruder refused')
        time.sleep(0.5)
        self.assertEqual(self.pongs(intruder, self.a), 0)
        ids = [p['id'] for p in self.a.status()['peers']]
        self.assertNotIn(intruder.id, ids)
        self.assertEqual(self.a.status()['counters']['envelope']['accepted'] > 0, True)

    def test_kill9_and_restart_keeps_identity(self):
        self.a.start(peers=[self.b])
        self.b.start(peers=[self.a])
        wait_for(lambda: self.pongs(self.b, self.a) >= 1, what='first pong')
        self.a.kill9()
        before = self.pongs(self.b, self.a)
        self.a.start(peers=[self.b])
        self.assertEqual(self.a.status()['node_id'], self.a.id)
        wait_for(lambda: self.pongs(self.b, self.a) > before + 2, what='pongs after restart')
        wait_for(lambda: self.pongs(self.a, self.b) >= 2, what='restarted node hears peer')


class DevModeTest(unittest.TestCase):
    def test_dev_prints_api_and_token(self):
        import subprocess
        from harness import NEXUS, free_port
        api = '127.0.0.1:%d' % free_port()
        p = subprocess.Popen([NEXUS, 'node', '--dev', '--api', api, '--bind',
                              '127.0.0.1:%d' % free_port()], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        try:
            lines = [p.stdout.readline() for _ in range(5)]
            text = ''.join(lines)
            self.assertIn('API:   http://' + api, text)
            token = [l.split()[1] for l in lines if l.startswith('token:')][0]
            r = run('status', '--api', api, '--token', token)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            p.terminate()
            p.wait(10)
            p.stdout.close()


if __name__ == '__main__':
    unittest.main()
