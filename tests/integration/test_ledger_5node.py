"""Five voters on loopback (static bootstrap): kill -9 the leader during 1,000 concurrent
signed transfers (issue 6, item 7).

The client side is a second implementation of the command bytes (docs/ledger.md section
3, checked against the documented test vector) with Ed25519 from libsodium (ctypes, harness.Sodium):
every transfer is signed here, before the burst, with the payer's key file that
`nexus account create` wrote. WORKERS threads post them to the five members' APIs in
turn. A transfer has a fixed idempotency key and creation time, so resending it is safe:
when an attempt ends without an answer (member killed, connection refused, timeout, 503
while there is no leader), the same bytes go to the next member, as a real client would.
A transfer counts as acknowledged when a member answers 200. Afterwards, on every survivor:

- every acknowledged transfer is in `nexus ledger log` exactly once, with its hash,
  accounts, amount and idempotency key; no (author, idempotency key) appears twice and
  nothing this test did not send is there;
- the balances replayed from the log equal `nexus ledger accounts`, and sum to the supply;
- `nexus ledger verify` exits 0, and all survivors report the same chain head.
"""
import hashlib
import http.client as http_client
import json
import os
import struct
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from harness import Cluster, Sodium, http, raft_leader, raft_status, run, wait_for

N_NODES = 5
N_TRANSFERS = 1000
WORKERS = 24
N_ACCOUNTS = 8
MINT_EACH = 100000
KILL_AFTER_ACKED = 250  # the leader dies with about 750 transfers still to go
GIVE_UP_S = 60.0  # per transfer: a transfer still unanswered then fails the test
EXTRA = ('--raft-snapshot-every', '400')  # snapshots are made during the burst

CMD_DOMAIN = b'NXLEDGER-cmd-v1:'
CMD_TRANSFER = 14


def name_bytes(name):
    return bytes([len(name)]) + name.encode()


def transfer_cmd(seed, cluster_id, idem, created_ms, src, dst, amount):
    """A signed transfer command (docs/ledger.md section 3)."""
    author, sk = Sodium.keypair(seed)
    body = name_bytes(src) + name_bytes(dst) + struct.pack('<Q', amount)
    signed = (CMD_DOMAIN + bytes([CMD_TRANSFER, 0, 0, 0]) + struct.pack('<I', len(body)) +
              cluster_id + author + idem + struct.pack('<Q', created_ms) + body)
    return signed + Sodium.sign(sk, signed)


def read_seed(path):
    with open(path) as f:
        text = f.read()
    assert text.startswith('nexus-ed25519-key-v1\n'), path
    return bytes.fromhex(text.split('seed=')[1].strip())


class Ledger5NodeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cid = os.urandom(16).hex()
        cls.nodes = [cls.c.node('r%d' % i, cid) for i in range(N_NODES)]
        seed = os.urandom(32).hex()
        cls.op_key = os.path.join(cls.c.workdir, 'operator.key')
        for path in [cls.op_key] + [os.path.join(n.data_dir, 'operator.key') for n in cls.nodes]:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, ('nexus-ed25519-key-v1\nseed=%s\n' % seed).encode())
            os.close(fd)
        for nd in cls.nodes:
            nd.trust(*cls.nodes)
        for nd in cls.nodes:
            nd.start_raft(cls.nodes, *EXTRA)
        raft_leader(cls.nodes, timeout=30)
        for nd in cls.nodes:
            wait_for(lambda: nd.request('GET', '/v1/ledger/genesis?stale')[0] == 200,
                     timeout=30, what='ledger genesis on %s' % nd.name)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        if getattr(cls, 'figure', None):  # after unittest's result line, which the runner parses
            sys.stderr.write('  %s\n' % cls.figure)

    def cli(self, node, *args, timeout=30):
        return run(*args, '--api', node.api, '--token', node.token, '--operator-key', self.op_key,
                   timeout=timeout)

    def ok(self, res):
        self.assertEqual(res.returncode, 0, 'stdout=%r stderr=%r' % (res.stdout, res.stderr))
        return res.stdout

    def key(self, name):
        return os.path.join(self.c.workdir, name + '.key')

    def test_0_command_bytes_match_the_documented_test_vector(self):
        cmd = transfer_cmd(b'\x02' * 32, b'\x01' * 16, b'\x03' * 32, 0, 'alice', 'bob', 5)
        self.assertEqual(len(cmd), 194)
        self.assertEqual(cmd[-64:].hex(), '8a093b2e17a4f183d837d3eca1779b4eae962e02f423d47c7b4e12'
                         '022346ccb4695ae5cc8e723a540c6b9df4ff9e3013471711a0d10363063fadcb88c33aae0c')

    def plan(self):
        """The 1,000 transfers, signed: (i, from, to, amount, idempotency key, command)."""
        genesis = self.nodes[0].request('GET', '/v1/ledger/genesis?stale')[1]
        cid = bytes.fromhex(genesis['cluster_id'])
        seeds = {'a%d' % k: read_seed(self.key('a%d' % k)) for k in range(N_ACCOUNTS)}
        now = int(time.time() * 1000)
        out = []
        for i in range(N_TRANSFERS):
            src = 'a%d' % (i % N_ACCOUNTS)
            dst = 'a%d' % ((i + 1 + (i // N_ACCOUNTS) % (N_ACCOUNTS - 1)) % N_ACCOUNTS)
            amount = 1 + i % 7
            idem = hashlib.blake2b(b'five-node-%d' % i, digest_size=32).digest()
            out.append((i, src, dst, amount, idem,
                        transfer_cmd(seeds[src], cid, idem, now, src, dst, amount)))
        return out

    def send(self, t, acked, state):
        """Posts transfer t (signed bytes) until it is answered; records an acknowledgement."""
        i, src, dst, amount, idem, cmd = t
        body = json.dumps({'command': cmd.hex()}).encode()
        deadline = time.monotonic() + GIVE_UP_S
        attempt = 0
        while True:
            node = self.nodes[(i + attempt) % N_NODES]
            attempt += 1
            try:
                code, reply = http(node, 'POST', '/v1/ledger/commands', body, timeout=10)
            except (OSError, http_client.HTTPException) as e:  # killed, refused, timed out
                code, reply = None, repr(e)
            if code == 200:
                self.assertTrue(reply['accepted'], reply)
                with state['lock']:
                    acked[i] = (reply['tx_hash'], src, dst, amount, idem.hex())
                    if reply['duplicate']:
                        state['duplicates'] += 1
                return
            # a decided rejection (422) is final and must not happen here (no overdraft is
            # possible); 400 means the test built a bad command
            self.assertNotIn(code, (400, 422), 'transfer %d refused: %r' % (i, reply))
            with state['lock']:
                state['resends'] += 1
            if time.monotonic() > deadline:
                raise AssertionError('transfer %d unanswered after %.0fs: %r %r' % (
                    i, GIVE_UP_S, code, reply))
            time.sleep(0.02 * min(attempt, 10))

    def full_log(self, node):
        log, after = [], 0
        while True:
            page = json.loads(self.ok(self.cli(node, 'ledger', 'log', '--stale', '--json',
                                               '--after', str(after), '--limit', '1000')))
            log += page['transactions']
            if not page['transactions']:
                return log
            after = page['next_after']

    def check_survivor(self, nd, acked, planned_idems):
        log = self.full_log(nd)
        mints = [t for t in log if t['kind'] == 'mint']
        transfers = [t for t in log if t['kind'] == 'transfer']
        self.assertEqual(len(mints), N_ACCOUNTS)
        supply = sum(t['amount'] for t in mints)
        self.assertEqual(supply, N_ACCOUNTS * MINT_EACH)
        by_hash = {}
        for t in log:
            by_hash.setdefault(t['hash'], []).append(t)
        # every acknowledged transfer is there exactly once, as it was sent
        for i, (h, src, dst, amount, idem) in sorted(acked.items()):
            got = by_hash.get(h, [])
            self.assertEqual(len(got), 1, 'acknowledged transfer %d (%s) appears %d times on %s'
                             % (i, h, len(got), nd.name))
            t = got[0]
            self.assertEqual((t['from'], t['to'], t['amount'], t['idempotency_key']),
                             (src, dst, amount, idem), 'transfer %d on %s' % (i, nd.name))
        # nothing applied twice, nothing that was not sent
        idems = [(t['author'], t['idempotency_key']) for t in transfers]
        self.assertEqual(len(idems), len(set(idems)), 'a transfer applied twice on %s' % nd.name)
        self.assertTrue({k for _, k in idems} <= planned_idems, 'unknown transfer on %s' % nd.name)
        self.assertEqual([t['seq'] for t in log], list(range(1, len(log) + 1)))
        # balances: replayed from the log == stored, and they sum to the supply
        replay = {}
        for t in log:
            if t['from']:
                replay[t['from']] = replay.get(t['from'], 0) - t['amount']
            replay[t['to']] = replay.get(t['to'], 0) + t['amount']
        accts = json.loads(self.ok(self.cli(nd, 'ledger', 'accounts', '--stale', '--json')))
        stored = {a['name']: a['balance'] for a in accts['accounts']}
        self.assertEqual(stored, replay, 'balances on %s' % nd.name)
        self.assertEqual(sum(stored.values()), supply)
        res = self.cli(nd, 'ledger', 'verify', '--json')
        self.assertEqual(res.returncode, 0, '%s: verify: %s %s' % (nd.name, res.stdout,
                                                                 res.stderr))
        v = json.loads(res.stdout)
        self.assertEqual((v['ok'], v['transactions'], v['supply']), (True, len(log), supply))
        return len(transfers), v['head']

    def test_leader_killed_during_1000_concurrent_transfers(self):
        first = self.nodes[1]
        for k in range(N_ACCOUNTS):
            name = 'a%d' % k
            self.ok(self.cli(first, 'account', 'create', name, '--key-file', self.key(name)))
            self.ok(self.cli(first, 'ledger', 'mint', '--to', name, '--amount', str(MINT_EACH)))
        plan = self.plan()
        acked, state = {}, {'lock': threading.Lock(), 'resends': 0, 'duplicates': 0}
        leader = raft_leader(self.nodes)
        t0 = time.monotonic()
        with ThreadPoolExecutor(WORKERS) as pool:
            futures = [pool.submit(self.send, t, acked, state) for t in plan]
            wait_for(lambda: len(acked) >= KILL_AFTER_ACKED or all(f.done() for f in futures),
                     timeout=90, what='%d transfers acknowledged' % KILL_AFTER_ACKED)
            leader = raft_leader(self.nodes)  # whoever leads now
            leader.kill9()
            killed_at = len(acked)
            for f in futures:
                f.result()  # re-raises a failed transfer
        elapsed = time.monotonic() - t0
        self.assertLess(killed_at, N_TRANSFERS // 2, 'the kill came too late to matter')
        self.assertEqual(len(acked), N_TRANSFERS)
        survivors = [nd for nd in self.nodes if nd is not leader]
        raft_leader(survivors, timeout=30)
        # the survivors apply everything that is committed
        wait_for(lambda: len({(raft_status(nd)['applied_index'], raft_status(nd)['commit_index'])
                              for nd in survivors}) == 1 and
                 raft_status(survivors[0])['applied_index'] ==
                 raft_status(survivors[0])['commit_index'], timeout=30,
                 what='survivors caught up')
        planned = {t[4].hex() for t in plan}
        results = [self.check_survivor(nd, acked, planned) for nd in survivors]
        self.assertEqual(len({head for _, head in results}), 1, 'survivors differ: %r' % results)
        self.assertEqual(results[0][0], N_TRANSFERS)  # every transfer was acknowledged once
        type(self).figure = ('5 voters: %d transfers acknowledged in %.1fs, leader %s killed '
                             'after %d; %d resends, %d answered as duplicates' % (
                                 len(acked), elapsed, leader.name, killed_at, state['resends'],
                                 state['duplicates']))


if __name__ == '__main__':
    unittest.main()
