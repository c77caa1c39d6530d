"""The replicated ledger on Raft, through the CLI (commands signed on the client).

Single node (--bootstrap): genesis by the node's operator.key, accounts, mint,
transfers, overdraft refused with a clear error, an idempotent retry answered
with the original result and no second debit, the log and verify.
Three voters (static bootstrap): transfers through a follower; the leader is
killed with -9 during a burst of concurrent transfers; every acknowledged
transfer is on every survivor, verify passes on each, supply is conserved."""
import base64
import http.server
import json
import os
import sys
import threading
import time
import unittest

from harness import Cluster, raft_leader, raft_cluster, raft_status, run, wait_for


def ledger(node, *args, key_dir=None):
    return run(*args, '--api', node.api, '--data-dir', node.data_dir, timeout=30)


def ok(test, res):
    test.assertEqual(res.returncode, 0, 'stdout=%r stderr=%r' % (res.stdout, res.stderr))
    return res.stdout


def balance(node, name, stale=False):
    args = ['ledger', 'balance', name, '--json'] + (['--stale'] if stale else [])
    res = ledger(node, *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)['balance']


def wait_genesis(node):
    wait_for(lambda: node.request('GET', '/v1/ledger/genesis?stale')[0] == 200,
             timeout=15, what='ledger genesis')


class LedgerSingleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cls.n = cls.c.node('solo')
        # small snapshot interval: snapshots (kv + ledger) are made during the test
        cls.n.start('--bootstrap', '--raft-snapshot-every', '4')
        wait_for(lambda: raft_status(cls.n)['role'] == 'leader', what='leader')
        wait_genesis(cls.n)
        cls.keys = os.path.join(cls.c.workdir, 'keys')
        os.mkdir(cls.keys)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def key(self, name):
        return os.path.join(self.keys, name + '.key')

    def test_accounts_mint_transfer_idempotency_log_verify(self):
        n = self.n
        for name in ('alice', 'bob'):
            out = ok(self, ledger(n, 'account', 'create', name, '--key-file', self.key(name)))
            self.assertIn(name, out)
            self.assertEqual(os.stat(self.key(name)).st_mode & 0o777, 0o600)
        ok(self, ledger(n, 'ledger', 'mint', '--to', 'alice', '--amount', '100'))
        ok(self, ledger(n, 'ledger', 'transfer', '--from', 'alice', '--to', 'bob', '--amount',
                        '30', '--key-file', self.key('alice')))
        # overdraft: refused, clearly
        res = ledger(n, 'ledger', 'transfer', '--from', 'alice', '--to', 'bob', '--amount',
                     '1000', '--key-file', self.key('alice'))
        self.assertEqual(res.returncode, 1)
        self.assertIn('insufficient balance', res.stderr)
        # a key that is not the payer's: refused
        res = ledger(n, 'ledger', 'transfer', '--from', 'alice', '--to', 'bob', '--amount', '1',
                     '--key-file', self.key('bob'))
        self.assertEqual(res.returncode, 1)
        self.assertIn('permission denied', res.stderr)
        # the same command twice (same idempotency key and time): one debit, same result
        args = ('ledger', 'transfer', '--from', 'alice', '--to', 'bob', '--amount', '5',
                '--key-file', self.key('alice'), '--idempotency-key', 'order-42',
                '--created-ms', str(int(time.time() * 1000)), '--json')
        first = json.loads(ok(self, ledger(n, *args)))
        second = json.loads(ok(self, ledger(n, *args)))
        self.assertFalse(first['duplicate'])
        self.assertTrue(second['duplicate'])
        self.assertEqual(first['tx_hash'], second['tx_hash'])
        self.assertEqual(first['tx_seq'], second['tx_seq'])
        self.assertEqual(balance(n, 'alice'), 65)
        self.assertEqual(balance(n, 'bob'), 35)
        self.assertEqual(balance(n, 'bob', stale=True), 35)
        log = json.loads(ok(self, ledger(n, 'ledger', 'log', '--json')))['transactions']
        self.assertEqual([(t['kind'], t['from'], t['to'], t['amount']) for t in log],
                         [('mint', '', 'alice', 100), ('transfer', 'alice', 'bob', 30),
                          ('transfer', 'alice', 'bob', 5)])
        page = json.loads(ok(self, ledger(n, 'ledger', 'log', '--after', '1', '--limit', '1',
                                          '--json')))
        self.assertEqual([t['seq'] for t in page['transactions']], [2])
        out = ok(self, ledger(n, 'ledger', 'verify'))
        self.assertIn('ok: 3 transactions, supply 100', out)
        accounts = json.loads(ok(self, ledger(n, 'ledger', 'accounts', '--json')))['accounts']
        self.assertEqual(sorted(a['name'] for a in accounts), ['alice', 'bob'])

    def test_operator_commands_need_the_operator_key(self):
        res = run('ledger', 'mint', '--to', 'alice', '--amount', '1', '--api', self.n.api,
                  '--token', self.n.token)
        self.assertEqual(res.returncode, 1)
        self.assertIn('--operator-key', res.stderr)

    def test_garbage_command_is_refused(self):
        code, body = self.n.request('POST', '/v1/ledger/commands', body={'command': 'zz'})
        self.assertEqual(code, 400, body)
        code, body = self.n.request('GET', '/v1/ledger/balance/nobody')
        self.assertEqual(code, 404, body)

    def capture_command(self, *args):
        """Runs a CLI command against a stand-in API that records the signed command."""
        node, got = self.n, {}

        class Fake(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.reply(*node.request('GET', self.path))

            def do_POST(self):
                got['command'] = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
                self.reply(200, {'accepted': True, 'index': 0, 'duplicate': False})

        srv = http.server.HTTPServer(('127.0.0.1', 0), Fake)
        t = threading.Thread(target=srv.serve_forever)
        t.start()
        try:
            res = run(*args, '--api', '127.0.0.1:%d' % srv.server_port, '--data-dir',
                      node.data_dir)
            self.assertEqual(res.returncode, 0, res.stderr)
        finally:
            srv.shutdown()
            srv.server_close()
        return bytes.fromhex(got['command']['command'])

    def test_raw_api_refuses_forged_signature_and_answers_a_resend_as_duplicate(self):
        ok(self, ledger(self.n, 'account', 'create', 'erin', '--key-file', self.key('erin')))
        cmd = self.capture_command('account', 'create', 'dave', '--key-file', self.key('dave'))
        forged = cmd[:-1] + bytes([cmd[-1] ^ 1])
        applied = raft_status(self.n)['applied_index']
        code, body = self.n.request('POST', '/v1/ledger/commands', body={'command': forged.hex()})
        self.assertEqual(code, 400, body)
        self.assertIn('bad signature', body['error'])
        self.assertEqual(raft_status(self.n)['applied_index'], applied)  # took no log slot
        b64 = base64.b64encode(cmd).decode()
        code, first = self.n.request('POST', '/v1/ledger/commands', body={'command': b64})
        self.assertEqual((code, first['accepted'], first['duplicate']), (200, True, False), first)
        code, again = self.n.request('POST', '/v1/ledger/commands', body={'command': cmd.hex()})
        self.assertEqual((code, again['duplicate']), (200, True), again)

    def test_ledger_survives_restart(self):
        n = self.n
        ok(self, ledger(n, 'account', 'create', 'carol', '--key-file', self.key('carol')))
        ok(self, ledger(n, 'ledger', 'mint', '--to', 'carol', '--amount', '7'))
        self.assertGreater(raft_status(n)['counters']['snapshots_made'], 0)
        n.kill9()
        n.start('--raft-snapshot-every', '4')
        wait_for(lambda: raft_status(n)['role'] == 'leader', what='leader after restart')
        self.assertEqual(balance(n, 'carol'), 7)
        ok(self, ledger(n, 'ledger', 'verify'))


# small snapshot interval: the killed leader, restarted, catches up by a kv + ledger snapshot
CLUSTER_EXTRA = ('--raft-snapshot-every', '50')


class LedgerClusterTest(unittest.TestCase):
    """Three voters, one operator key copied into every data directory before the first start."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cls.cid = os.urandom(16).hex()
        cls.nodes = [cls.c.node('r%d' % i, cls.cid) for i in range(3)]
        seed = os.urandom(32).hex()
        cls.op_key = os.path.join(cls.c.workdir, 'operator.key')
        for path in [cls.op_key] + [os.path.join(n.data_dir, 'operator.key') for n in cls.nodes]:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, ('nexus-ed25519-key-v1\nseed=%s\n' % seed).encode())
            os.close(fd)
        for nd in cls.nodes:
            nd.trust(*cls.nodes)
        for nd in cls.nodes:
            nd.start_raft(cls.nodes, *CLUSTER_EXTRA)
        raft_leader(cls.nodes)
        for nd in cls.nodes:
            wait_genesis(nd)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        if getattr(cls, 'figure', None):  # after unittest's result line, which the runner parses
            sys.stderr.write('  %s\n' % cls.figure)

    def cli(self, node, *args):
        return run(*args, '--api', node.api, '--token', node.token, '--operator-key', self.op_key,
                   timeout=30)

    def key(self, name):
        return os.path.join(self.c.workdir, name + '.key')

    def test_transfers_via_follower_and_leader_killed_during_burst(self):
        leader = raft_leader(self.nodes)
        follower = next(nd for nd in self.nodes if nd is not leader)
        genesis = follower.request('GET', '/v1/ledger/genesis')[1]
        self.assertEqual(genesis['cluster_id'], self.cid)  # the mesh's cluster id
        for name in ('alice', 'bob'):
            ok(self, self.cli(follower, 'account', 'create', name, '--key-file', self.key(name)))
        supply = 1000000
        ok(self, self.cli(follower, 'ledger', 'mint', '--to', 'alice', '--amount', str(supply)))
        ok(self, self.cli(follower, 'ledger', 'transfer', '--from', 'alice', '--to', 'bob',
                          '--amount', '10', '--key-file', self.key('alice')))
        self.assertEqual(balance(follower, 'bob'), 10)

        acked = {}  # tx hash -> amount
        lock = threading.Lock()
        started = [0]
        total, workers = 200, 8

        def worker(w):
            for i in range(w, total, workers):
                node = self.nodes[i % 3]
                with lock:
                    started[0] += 1
                amount = 1 + i % 5
                res = self.cli(node, 'ledger', 'transfer', '--from', 'alice', '--to', 'bob',
                               '--amount', str(amount), '--key-file', self.key('alice'),
                               '--json')
                if res.returncode == 0:
                    body = json.loads(res.stdout)
                    self.assertTrue(body['accepted'])
                    with lock:
                        acked[body['tx_hash']] = amount

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        wait_for(lambda: started[0] >= total // 4, timeout=30, what='burst under way')
        leader.kill9()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
        survivors = [nd for nd in self.nodes if nd is not leader]
        raft_leader(survivors)
        self.assertGreater(len(acked), total // 4, 'too few transfers acknowledged')
        type(self).figure = ('burst: %d of %d transfers acknowledged in %.1fs across a leader '
                             'kill' % (len(acked), total, elapsed))
        # wait until both survivors applied the same index
        wait_for(lambda: len({raft_status(nd)['applied_index'] for nd in survivors}) == 1 and
                 raft_status(survivors[0])['applied_index'] ==
                 raft_status(survivors[0])['commit_index'], timeout=15, what='survivors caught up')
        # the old leader comes back and catches up (by snapshot: the others compacted)
        leader.start_raft(self.nodes, *CLUSTER_EXTRA)
        target = raft_status(survivors[0])['applied_index']
        wait_for(lambda: raft_status(leader)['applied_index'] >= target, timeout=20,
                 what='old leader caught up')
        self.assertGreaterEqual(raft_status(leader)['counters']['snapshots_installed'], 1)
        for nd in self.nodes:
            log, after = [], 0
            while True:
                page = json.loads(ok(self, self.cli(nd, 'ledger', 'log', '--stale', '--json',
                                                    '--after', str(after), '--limit', '1000')))
                log += page['transactions']
                if not page['transactions']:
                    break
                after = page['next_after']
            hashes = {t['hash']: t['amount'] for t in log}
            missing = [h for h in acked if h not in hashes]
            self.assertEqual(missing, [], 'acknowledged transfers missing on %s' % nd.name)
            self.assertEqual(len(log), len(hashes))
            ok(self, self.cli(nd, 'ledger', 'verify'))
            accts = json.loads(ok(self, self.cli(nd, 'ledger', 'accounts', '--stale',
                                                 '--json')))['accounts']
            self.assertEqual(sum(a['balance'] for a in accts), supply)
            moved = sum(t['amount'] for t in log if t['kind'] == 'transfer')
            self.assertEqual({a['name']: a['balance'] for a in accts},
                             {'alice': supply - moved, 'bob': moved})


if __name__ == '__main__':
    unittest.main()
