"""Mesh-wide agents through the CLI: three real nodes (static bootstrap) with different
resources and labels. n0 has 2 GPUs and zone=a, n1 zone=b, n2 zone=c; each advertises a
fixed 4000 millicores and 8 GiB (--cpu-millicores/--mem-mb), so the machine's own load
(other tests, other builds) cannot make placement flaky.

Publish on one node, list/show/search/deprecate on another; a run from a third lands on
the member its constraint names, the bundle fetched from a peer on demand; a GPU agent
lands only on the GPU node; a run nothing can fit gets the explanation (and plan shows
every verdict); a bundle whose bytes do not match its hash is refused, both at upload
and when a peer serves tampered bytes; a retried run (same run id) is charged once."""
import json
import os
import shutil
import tempfile
import time
import unittest

from harness import Cluster, http, raft_leader, run, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, '..', '..', 'examples', 'agents')
SIZES = ('--cpu-millicores', '4000', '--mem-mb', '8192')


def cli(node, *args, timeout=60):
    return run(*args, '--api', node.api, '--data-dir', node.data_dir, timeout=timeout)


def make_bundle(root, name, version='1.0.0', resources=None, caps=None, greeting='hello',
                sleep_s=0):
    """A stateless sh agent answering {"greeting": ...} (after sleep_s seconds)."""
    d = os.path.join(root, '%s-%s' % (name, version))
    os.makedirs(d)
    manifest = {'name': name, 'version': version, 'kind': 'stateless',
                'description': 'test agent %s' % name,
                'entrypoint': ['/usr/bin/sh', '/agent/agent.sh'],
                'resources': resources or {'cpu_millicores': 100, 'memory_mb': 16},
                'timeout_ms': 5000}
    if caps:
        manifest['capabilities'] = caps
    with open(os.path.join(d, 'manifest.json'), 'w') as f:
        json.dump(manifest, f)
    with open(os.path.join(d, 'agent.sh'), 'w') as f:
        f.write('#!/bin/sh\nread -r line || exit 1\n'
                'id=$(printf "%%s" "$line" | sed -n \'s/.*"id":\\([0-9][0-9]*\\).*/\\1/p\')\n'
                '%s'
                'printf \'{"id":%%s,"output":{"greeting":"%s"}}\\n\' "${id:-0}"\n'
                % ('sleep %d\n' % sleep_s if sleep_s else '', greeting))
    return d


class AgentsMeshTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()
        cls.tmp = tempfile.mkdtemp(prefix='nexus-bundles-')
        cid = os.urandom(16).hex()
        nodes = [cls.c.node('n%d' % i, cid) for i in range(3)]
        for nd in nodes:
            nd.trust(*nodes)
        extra = [('--gpus', '2', '--gpu-mem-mb', '16384', '--label', 'zone=a'),
                 ('--label', 'zone=b'), ('--label', 'zone=c')]
        for nd, ex in zip(nodes, extra):
            nd.start_raft(nodes, *(SIZES + ex))
        cls.n0, cls.n1, cls.n2 = cls.nodes = nodes
        raft_leader(nodes)
        wait_for(lambda: all(nd.request('GET', '/v1/ledger/genesis?stale')[0] == 200
                             for nd in nodes), timeout=20, what='genesis everywhere')
        wait_for(lambda: all(len(nd.request('GET', '/v1/members')[1]['members']) == 3
                             for nd in nodes), timeout=20, what='gossip sees 3 members')
        # only members the registry admitted may charge runs (the leader admits the
        # static-bootstrap voters after genesis)
        wait_for(lambda: all(nd.request('GET', '/v1/status')[1]['raft']['registry']['members']
                             == 3 for nd in nodes), timeout=20, what='3 admitted members')
        cls.op_key = cls.operator_key()
        cls.published = set()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def operator_key(cls):
        """Every static-bootstrap node made an operator.key; the leader's signed genesis.
        Only that key may mint: a mint to a missing account tells them apart."""
        for nd in cls.nodes:
            k = os.path.join(nd.data_dir, 'operator.key')
            res = run('ledger', 'mint', '--to', 'nobody', '--amount', '1', '--operator-key', k,
                      '--api', cls.n0.api, '--data-dir', cls.n0.data_dir)
            if 'unknown account' in res.stderr:
                return k
        raise AssertionError('no node holds the genesis operator key')

    def ok(self, res):
        self.assertEqual(res.returncode, 0, 'stdout=%r stderr=%r' % (res.stdout, res.stderr))
        return res.stdout

    def publish(self, node, bundle_dir):
        out = self.ok(cli(node, 'agent', 'publish', bundle_dir, '--operator-key', self.op_key))
        self.assertIn('published', out)
        return out

    def wait_registry(self, node, name, versions=1):
        """The registry is read from each node's applied state: wait for replication."""
        def there():
            code, body = node.request('GET', '/v1/agents/' + name)
            return code == 200 and len(body['versions']) >= versions
        wait_for(there, timeout=10, what='%s in %s registry' % (name, node.name))

    def run_json(self, node, *args):
        res = cli(node, 'agent', 'run', *args, '--json')
        try:
            return res.returncode, json.loads(res.stdout)
        except ValueError:
            self.fail('not JSON: stdout=%r stderr=%r' % (res.stdout, res.stderr))

    def test_publish_on_one_list_show_search_deprecate_on_another(self):
        wc = os.path.join(EXAMPLES, 'wordcount-py')
        self.publish(self.n0, wc)
        v1 = make_bundle(self.tmp, 'greeter', '1.0.0',
                         caps=[{'name': 'greet', 'description': 'says hello politely'}])
        v2 = make_bundle(self.tmp, 'greeter', '1.10.0', greeting='hi',
                         caps=[{'name': 'greet', 'description': 'says hello politely'}])
        self.publish(self.n0, v1)
        self.publish(self.n0, v2)
        self.wait_registry(self.n1, 'greeter', 2)
        self.wait_registry(self.n1, 'wordcount-py')
        listed = json.loads(self.ok(cli(self.n1, 'agent', 'list', '--json')))['agents']
        names = {a['name']: a for a in listed}
        self.assertIn('greeter', names)
        self.assertIn('wordcount-py', names)
        self.assertEqual(names['greeter']['latest'], '1.10.0')  # numeric order, not bytes
        out = self.ok(cli(self.n1, 'agent', 'list'))
        self.assertIn('wordcount-py', out)
        self.assertIn('count', out)  # its capability
        # search by capability name or description, on a member that did not publish
        found = json.loads(self.ok(cli(self.n2, 'agent', 'search', 'COUNT', '--json')))['agents']
        self.assertEqual([a['name'] for a in found], ['wordcount-py'])
        found = json.loads(self.ok(cli(self.n2, 'agent', 'search', 'politely', '--json')))
        self.assertEqual([a['name'] for a in found['agents']], ['greeter'])
        res = cli(self.n2, 'agent', 'search', 'no-such-capability')
        self.assertEqual(res.returncode, 1)
        # show: every version, with its hashes and capabilities
        shown = json.loads(self.ok(cli(self.n1, 'agent', 'show', 'greeter', '--json')))
        self.assertEqual([v['version'] for v in shown['versions']], ['1.0.0', '1.10.0'])
        self.assertEqual(len(shown['versions'][0]['bundle_hash']), 64)
        self.assertEqual(shown['versions'][0]['manifest']['name'], 'greeter')
        # deprecate 1.10.0 on n2: show says so, and a run without a version picks 1.0.0
        self.ok(cli(self.n2, 'agent', 'deprecate', 'greeter@1.10.0', '--operator-key',
                    self.op_key))
        wait_for(lambda: self.n1.request('GET', '/v1/agents/greeter')[1]['versions'][1]
                 ['deprecated'], timeout=10, what='deprecation replicated')
        out = self.ok(cli(self.n1, 'agent', 'show', 'greeter'))
        self.assertIn('deprecated', out)
        self.assertIn('latest 1.0.0', out)
        code, r = self.run_json(self.n1, 'greeter')
        self.assertEqual((code, r['output']), (0, {'greeting': 'hello'}), r)
        code, r = self.run_json(self.n1, 'greeter@1.10.0')
        self.assertNotEqual(code, 0)
        self.assertIn('deprecated', r['error'])
        res = cli(self.n1, 'agent', 'show', 'no-such-agent')
        self.assertEqual(res.returncode, 1)
        self.assertIn('no such agent', res.stderr)

    def test_run_from_a_third_member_lands_where_the_constraint_says(self):
        b = make_bundle(self.tmp, 'zoned', greeting='zoned hello')
        self.publish(self.n0, b)
        self.wait_registry(self.n2, 'zoned')
        # from n2, constrained to zone=b: runs on n1, which fetches the bundle from n0
        code, r = self.run_json(self.n2, 'zoned', '--constraint', 'zone=b', '--input', '"x"')
        self.assertEqual(code, 0, r)
        self.assertEqual(r['node'], self.n1.id)
        self.assertEqual(r['output'], {'greeting': 'zoned hello'})
        self.assertIn('usage', r)
        self.assertEqual(r['charge_skipped'], 'no account given: not charged')
        cached = os.path.join(self.n1.data_dir, 'agents', 'bundles')
        self.assertEqual(len([f for f in os.listdir(cached) if f.endswith('.nxb')]) >= 1, True)
        # the text form says where it ran
        out = self.ok(cli(self.n2, 'agent', 'run', 'zoned', '--constraint', 'zone=c'))
        self.assertIn('zoned hello', out)
        self.assertIn('ran on %s' % self.n2.id[:16], out)

    def test_gpu_agent_lands_only_on_the_gpu_node(self):
        b = make_bundle(self.tmp, 'gpu-agent', greeting='on a gpu',
                        resources={'cpu_millicores': 100, 'memory_mb': 16, 'gpus': 1})
        self.publish(self.n1, b)
        self.wait_registry(self.n2, 'gpu-agent')
        for requester in (self.n1, self.n2, self.n0):
            code, r = self.run_json(requester, 'gpu-agent')
            self.assertEqual(code, 0, r)
            self.assertEqual(r['node'], self.n0.id, r)
        plan = json.loads(self.ok(cli(self.n2, 'agent', 'plan', 'gpu-agent', '--json')))
        fits = {m['node']: m['fits'] for m in plan['members']}
        self.assertEqual(fits, {self.n0.id: True, self.n1.id: False, self.n2.id: False})

    def test_gpus_held_by_runs_are_advertised_and_refused_until_released(self):
        b = make_bundle(self.tmp, 'slow-gpu', greeting='slow', sleep_s=3,
                        resources={'cpu_millicores': 100, 'memory_mb': 16, 'gpus': 1})
        self.publish(self.n0, b)
        self.wait_registry(self.n1, 'slow-gpu')
        self.wait_registry(self.n2, 'slow-gpu')
        results = {}

        def go(node, key):
            results[key] = self.run_json(node, 'slow-gpu')

        import threading
        runs = [threading.Thread(target=go, args=(nd, nd.name)) for nd in (self.n1, self.n2)]
        for t in runs:
            t.start()

        def gpus_free(node):
            for m in node.request('GET', '/v1/members')[1]['members']:
                if m['id'] == self.n0.id:
                    return m['resources']['gpu_count']
        # both GPUs held: n0 advertises none free, and the mesh hears it
        wait_for(lambda: gpus_free(self.n2) == 0, timeout=3, what='n0 advertising 0 GPUs free')
        code, r = self.run_json(self.n1, 'slow-gpu')
        self.assertNotEqual(code, 0, r)
        # refused by n0 at admission, or not placed at all: either way it says why
        why = json.dumps(r)
        self.assertTrue('has 0 free' in why or 'no member has 1 GPU free' in why, why)
        for t in runs:
            t.join()
        for key in ('n1', 'n2'):
            self.assertEqual(results[key][0], 0, results[key])
            self.assertEqual(results[key][1]['node'], self.n0.id)
        # released: advertised again, and a run fits again
        wait_for(lambda: gpus_free(self.n1) == 2, timeout=5, what='n0 advertising 2 GPUs')
        b2 = make_bundle(self.tmp, 'quick-gpu', greeting='quick',
                         resources={'cpu_millicores': 100, 'memory_mb': 16, 'gpus': 1})
        self.publish(self.n0, b2)
        self.wait_registry(self.n1, 'quick-gpu')
        code, r = self.run_json(self.n1, 'quick-gpu')
        self.assertEqual((code, r['node']), (0, self.n0.id), r)

    def test_a_run_nothing_can_fit_gets_the_explanation(self):
        b = make_bundle(self.tmp, 'big-gpu',
                        resources={'cpu_millicores': 100, 'memory_mb': 16, 'gpus': 4})
        self.publish(self.n0, b)
        self.wait_registry(self.n1, 'big-gpu')
        res = cli(self.n1, 'agent', 'run', 'big-gpu')
        self.assertEqual(res.returncode, 1)
        self.assertIn('no member has 4 GPUs free; the most free is node %s with 2'
                      % self.n0.id[:8], res.stderr)
        out = self.ok(cli(self.n2, 'agent', 'plan', 'big-gpu'))
        self.assertIn('needs 4 GPUs, has 2 free', out)
        self.assertIn('needs 4 GPUs, has 0 free', out)
        self.assertIn('nothing fits', out)

    def test_a_bundle_whose_bytes_do_not_match_its_hash_is_refused(self):
        # at upload: the node checks the bytes against the name they are sent under
        with open(os.path.join(EXAMPLES, 'hello-sh', 'manifest.json'), 'rb') as f:
            junk = f.read()
        code, body = http(self.n0, 'PUT', '/v1/bundles/%s?offset=0&total=%d' % ('ab' * 32,
                                                                              len(junk)), junk)
        self.assertEqual(code, 422, body)
        self.assertIn('hash mismatch', body['error'])
        # from a peer: n0 holds the only copy and serves tampered bytes
        b = make_bundle(self.tmp, 'tampered', greeting='never')
        self.publish(self.n0, b)
        self.wait_registry(self.n2, 'tampered')
        h = self.n0.request('GET', '/v1/agents/tampered')[1]['versions'][0]['bundle_hash']
        path = os.path.join(self.n0.data_dir, 'agents', 'bundles', h + '.nxb')
        with open(path, 'r+b') as f:
            data = bytearray(f.read())
            data[-3] ^= 0x20  # one byte of agent.sh
            f.seek(0)
            f.write(data)
        # members copy published bundles in the background (docs/agents.md section 3):
        # drop the good copies they may have made, so n0's tampered one is all there is
        time.sleep(0.3)
        for nd in (self.n1, self.n2):
            store = os.path.join(nd.data_dir, 'agents')
            for sub in ('bundles/%s.nxb' % h, 'cache/%s' % h):
                p = os.path.join(store, sub)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                elif os.path.exists(p):
                    os.unlink(p)
        code, r = self.run_json(self.n2, 'tampered', '--constraint', 'zone=c')
        self.assertNotEqual(code, 0, r)
        self.assertIn('hash mismatch', r['error'])
        self.assertEqual(r['node'], self.n2.id)
        self.assertFalse(os.path.exists(
            os.path.join(self.n2.data_dir, 'agents', 'bundles', h + '.nxb')))

    def test_bad_requests_get_clear_errors(self):
        res = cli(self.n0, 'agent', 'run', 'no-such-agent')
        self.assertEqual(res.returncode, 1)
        self.assertIn('no agent no-such-agent', res.stderr)
        d = os.path.join(self.tmp, 'with-link')
        shutil.copytree(os.path.join(EXAMPLES, 'hello-sh'), d)
        os.symlink('/etc/passwd', os.path.join(d, 'passwd'))
        res = cli(self.n0, 'agent', 'publish', d, '--operator-key', self.op_key)
        self.assertEqual(res.returncode, 2)
        self.assertIn('symlink', res.stderr)
        code, body = self.n0.request('POST', '/v1/runs', body={'agent': 'x', 'run_id': 'BAD ID'})
        self.assertEqual(code, 400, body)

    def test_a_retried_run_is_charged_once(self):
        b = make_bundle(self.tmp, 'metered', greeting='metered')
        self.publish(self.n0, b)
        self.wait_registry(self.n1, 'metered')
        keys = os.path.join(self.tmp, 'keys')
        os.makedirs(keys, exist_ok=True)
        for name in ('alice', 'default'):  # the payee is the agent's tenant's account
            self.ok(run('account', 'create', name, '--key-file', os.path.join(keys, name),
                        '--operator-key', self.op_key, '--api', self.n0.api, '--data-dir',
                        self.n0.data_dir))
        self.ok(run('ledger', 'mint', '--to', 'alice', '--amount', '1000', '--operator-key',
                    self.op_key, '--api', self.n0.api, '--data-dir', self.n0.data_dir))

        def balance(name):
            res = cli(self.n0, 'ledger', 'balance', name, '--json')
            self.assertEqual(res.returncode, 0, res.stderr)
            return json.loads(res.stdout)['balance']

        args = ('metered', '--account', 'alice', '--run-id', 'retry-me-1')
        code, first = self.run_json(self.n1, *args, '--constraint', 'zone=b')
        self.assertEqual(code, 0, first)
        self.assertIn('charge', first, first)
        charge = first['charge']
        self.assertGreaterEqual(charge['amount'], 1)
        self.assertFalse(charge.get('duplicate'))
        paid = 1000 - balance('alice')
        self.assertEqual(paid, charge['amount'])
        self.assertEqual(balance('default'), paid)
        # the same run id again, on the same node: the answer is replayed, nothing charged
        code, again = self.run_json(self.n2, *args, '--constraint', 'zone=b')
        self.assertEqual(code, 0, again)
        self.assertTrue(again.get('replayed'), again)
        # and on another node: it runs, but the ledger knows the run id
        code, elsewhere = self.run_json(self.n2, *args, '--constraint', 'zone=c')
        self.assertEqual(code, 0, elsewhere)
        self.assertTrue(elsewhere['charge'].get('already_charged'), elsewhere)
        self.assertEqual(1000 - balance('alice'), paid)
        self.ok(cli(self.n0, 'ledger', 'verify'))
        # no account: not charged, and the answer says so
        out = self.ok(cli(self.n1, 'agent', 'run', 'metered'))
        self.assertIn('not charged', out)
        self.assertEqual(1000 - balance('alice'), paid)


class JoinedNodeAgentsTest(unittest.TestCase):
    """The way the demo builds a mesh: one bootstrap node, another joined by token (no
    trust file, no --peer). A run placed on the joined node fetches the bundle from the
    bootstrap node, and the joined node, admitted by the registry, may charge."""

    def test_a_joined_node_runs_and_meters(self):
        c = Cluster()
        self.addCleanup(c.close)
        tmp = tempfile.mkdtemp(prefix='nexus-bundles-')
        self.addCleanup(shutil.rmtree, tmp, True)
        fast = ('--gossip-interval-ms', '200', '--ping-interval-ms', '200')
        a = c.node('a')
        a.start('--bootstrap', '--label', 'role=first', *(SIZES + fast))
        wait_for(lambda: a.request('GET', '/v1/ledger/genesis')[0] == 200, timeout=20,
                 what='genesis')
        op = os.path.join(a.data_dir, 'operator.key')
        res = run('token', 'create', '--api', a.api, '--data-dir', a.data_dir, '--operator-key',
                  op, '--uses', '1', '--ttl', '10m')
        self.assertEqual(res.returncode, 0, res.stderr)
        b = c.node('b')
        b.start('--join', a.bind, '--token', res.stdout.strip(), '--label', 'role=joined',
                *(SIZES + fast))
        wait_for(lambda: len(a.request('GET', '/v1/members')[1]['members']) == 2 and
                 len(b.request('GET', '/v1/members')[1]['members']) == 2, timeout=30,
                 what='gossip sees both')
        # no wait for b to catch up with Raft: its charge is resent until it can go
        bundle = make_bundle(tmp, 'joined-echo', greeting='from the joined node')
        out = run('agent', 'publish', bundle, '--api', a.api, '--data-dir', a.data_dir,
                  '--operator-key', op)
        self.assertEqual(out.returncode, 0, out.stderr)
        keys = os.path.join(tmp, 'keys')
        os.makedirs(keys)
        for name in ('carol', 'default'):
            out = run('account', 'create', name, '--key-file', os.path.join(keys, name),
                      '--operator-key', op, '--api', a.api, '--data-dir', a.data_dir)
            self.assertEqual(out.returncode, 0, out.stderr)
        out = run('ledger', 'mint', '--to', 'carol', '--amount', '100', '--operator-key', op,
                  '--api', a.api, '--data-dir', a.data_dir)
        self.assertEqual(out.returncode, 0, out.stderr)
        res = cli(a, 'agent', 'run', 'joined-echo', '--constraint', 'role=joined', '--account',
                  'carol', '--json')
        self.assertEqual(res.returncode, 0, res.stderr)
        r = json.loads(res.stdout)
        self.assertEqual(r['node'], b.id)
        self.assertEqual(r['output'], {'greeting': 'from the joined node'})
        self.assertNotIn('charge_error', r, (b.request('GET', '/v1/ledger/genesis?stale'),
                                             b.request('GET', '/v1/status')[1]['raft']))
        self.assertGreaterEqual(r['charge']['amount'], 1)
        bal = json.loads(cli(a, 'ledger', 'balance', 'carol', '--json').stdout)['balance']
        self.assertEqual(bal, 100 - r['charge']['amount'])


if __name__ == '__main__':
    unittest.main()
