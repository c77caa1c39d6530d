"""Helpers for multi-process tests: start real `nexus` nodes on loopback.

Every node gets its own temporary data directory and free ports. Processes are
killed when the test ends, even when it fails. Only 127.0.0.1 is ever used.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

NEXUS = os.environ.get('NEXUS_BIN') or os.path.join(
    os.path.dirname(__file__), '..', '..', 'build', 'release', 'nexus')


_used_ports = set()


def free_port():
    """A free TCP port on 127.0.0.1 below the kernel's ephemeral range (32768+), so
    the outgoing connections of other processes cannot take it between the check
    and the node's bind; never the same port twice in one test process."""
    import random
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        if port in _used_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError('no free port in 20000-32000')


def run(*args, env=None, timeout=30, check=False):
    """Runs `nexus ARGS`; returns CompletedProcess with text stdout/stderr."""
    full_env = dict(os.environ)
    full_env.pop('NEXUS_API', None)
    full_env.pop('NEXUS_TOKEN', None)
    if env:
        full_env.update(env)
    return subprocess.run([NEXUS] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, env=full_env, check=check)


def wait_for(predicate, timeout=15.0, interval=0.05, what='condition'):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            pass
        time.sleep(interval)
    raise AssertionError('timed out after %.1fs waiting for %s (last: %r)' % (timeout, what, last))


class Node:
    """One `nexus node` process with its own data directory and ports."""

    def __init__(self, workdir, name, cluster_id=None):
        self.name = name
        self.data_dir = os.path.join(workdir, name)
        self.bind = '127.0.0.1:%d' % free_port()
        self.api = '127.0.0.1:%d' % free_port()
        self.proc = None
        self.log_path = os.path.join(workdir, name + '.log')
        args = ['init', '--data-dir', self.data_dir, '--json']
        if cluster_id:
            args += ['--cluster-id', cluster_id]
        out = run(*args, check=True)
        self.id = json.loads(out.stdout)['node_id']

    @property
    def token(self):
        with open(os.path.join(self.data_dir, 'operator.token')) as f:
            return f.read().strip()

    def trust(self, *nodes):
        with open(os.path.join(self.data_dir, 'trusted.keys'), 'w') as f:
            for n in nodes:
                f.write('%s  # %s\n' % (n.id, n.name))

    def start(self, *extra, peers=()):
        args = [NEXUS, 'node', '--data-dir', self.data_dir, '--bind', self.bind, '--api',
                self.api] + list(extra)
        if '--ping-interval-ms' not in extra:
            args += ['--ping-interval-ms', '100']
        for p in peers:
            args += ['--peer', '%s@%s' % (p.id, p.bind)]
        if getattr(self, 'log', None):
            self.log.close()
        self.log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or self.health(), what='%s health' % self.name)
        if self.proc.poll() is not None:
            raise AssertionError('%s exited with %d:\n%s' % (self.name, self.proc.returncode,
                                                              self.read_log()))
        return self

    def read_log(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def request(self, method, path, token='default', body=None):
        req = urllib.request.Request('http://%s%s' % (self.api, path), method=method)
        if token == 'default':
            token = self.token
        if token:
            req.add_header('Authorization', 'Bearer ' + token)
        data = json.dumps(body).encode() if body is not None else None
        try:
            with urllib.request.urlopen(req, data=data, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b'null')
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b'null')

    def health(self):
        try:
            return self.request('GET', '/v1/health', token=None)[0] == 200
        except (OSError, urllib.error.URLError):
            return False

    def status(self):
        code, body = self.request('GET', '/v1/status')
        assert code == 200, (code, body)
        return body

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
        if getattr(self, 'log', None):
            self.log.close()


class Cluster:
    """A context of nodes in one temporary directory, all stopped at exit."""

    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix='nexus-test-')
        self.nodes = []

    def node(self, name, cluster_id=None):
        n = Node(self.workdir, name, cluster_id)
        self.nodes.append(n)
        return n

    def close(self, keep_on_failure=False):
        for n in self.nodes:
            n.stop()
        if not keep_on_failure:
            shutil.rmtree(self.workdir, ignore_errors=True)


# ---- Raft helpers (tests/integration/test_raft*.py, bench/raft_node) ----------

def kv_path(key, stale=False):
    return '/v1/kv/' + urllib.parse.quote(key, safe='') + ('?stale' if stale else '')


def http(node, method, path, body=None, timeout=5.0):
    """Raw-body request to node's API: (status, parsed JSON or None). Raises OSError on
    connection failures and timeouts (the caller decides what an unknown outcome means)."""
    req = urllib.request.Request('http://%s%s' % (node.api, path), method=method,
                                 data=body)
    req.add_header('Authorization', 'Bearer ' + node.token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw or b'null')
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b'null')
        except ValueError:
            return e.code, None


def raft_cluster(cluster, n, *extra):
    """n nodes started with static bootstrap (every node --bootstrap, the others as --peer)."""
    cid = os.urandom(16).hex()
    nodes = [cluster.node('r%d' % i, cid) for i in range(n)]
    for nd in nodes:
        nd.trust(*nodes)
    for nd in nodes:
        nd.start_raft(nodes, *extra)
    return nodes


def raft_status(node):
    return node.request('GET', '/v1/status')[1]['raft']


def raft_leader(nodes, timeout=15.0):
    """Waits until the running nodes agree on one leader among them; returns it."""
    def agreed():
        alive = [nd for nd in nodes if nd.proc and nd.proc.poll() is None]
        sts = [raft_status(nd) for nd in alive]
        leaders = [nd for nd, st in zip(alive, sts) if st['role'] == 'leader']
        if len(leaders) != 1:
            return None
        lid = leaders[0].id
        if all(st['leader'] == lid for st in sts):
            return leaders[0]
        return None
    return wait_for(agreed, timeout=timeout, interval=0.02, what='one agreed Raft leader')


def _start_raft(self, nodes, *extra):
    args = ['--bootstrap', '--gossip-interval-ms', '200', '--ping-interval-ms', '1000']
    args += list(extra)
    self.raft_nodes = nodes
    self.raft_extra = extra
    return self.start(*args, peers=[p for p in nodes if p is not self])


Node.start_raft = _start_raft


# ---- Ed25519 through the libsodium the node links (no extra Python package) -------

class Sodium:
    """crypto_sign_seed_keypair / crypto_sign_detached from libsodium via ctypes."""
    _lib = None

    @classmethod
    def lib(cls):
        if cls._lib is None:
            import ctypes
            import ctypes.util
            name = ctypes.util.find_library('sodium') or 'libsodium.so.23'
            cls._lib = ctypes.CDLL(name)
            if cls._lib.sodium_init() < 0:
                raise RuntimeError('sodium_init failed')
        return cls._lib

    @classmethod
    def keypair(cls, seed):
        """(public key 32 bytes, secret key 64 bytes) of a 32-byte seed."""
        import ctypes
        pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(64)
        if cls.lib().crypto_sign_seed_keypair(pk, sk, bytes(seed)) != 0:
            raise RuntimeError('crypto_sign_seed_keypair failed')
        return pk.raw, sk.raw

    @classmethod
    def sign(cls, sk, msg):
        import ctypes
        sig = ctypes.create_string_buffer(64)
        if cls.lib().crypto_sign_detached(sig, None, bytes(msg), ctypes.c_ulonglong(len(msg)),
                                          bytes(sk)) != 0:
            raise RuntimeError('crypto_sign_detached failed')
        return sig.raw


# ---- a cluster grown by tokens (tests/integration/test_sessions.py, test_spread.py) ----

def token_cluster(cluster, extras, voters=3):
    """Node 'a' bootstraps, the others join with one token made on it. extras[i] are the
    options of node i. Waits until every member is in every registry and gossip view and
    the leader has `voters` voters. Returns (nodes, path of the operator key)."""
    a = cluster.node('a')
    a.start('--bootstrap', *extras[0])
    wait_for(lambda: raft_status(a)['registry']['members'] == 1, timeout=20, what='genesis')
    op = os.path.join(a.data_dir, 'operator.key')
    nodes = [a]
    if len(extras) > 1:
        out = run('token', 'create', '--uses', str(len(extras) - 1), '--operator-key', op,
                  '--api', a.api, '--data-dir', a.data_dir)
        assert out.returncode == 0, out.stderr
        tok = out.stdout.strip()
        for i, ex in enumerate(extras[1:]):
            n = cluster.node(chr(ord('b') + i))
            n.start('--join', a.bind, '--token', tok, *ex)
            nodes.append(n)
    n_all = len(nodes)
    wait_for(lambda: all(raft_status(n)['registry']['members'] == n_all for n in nodes),
             timeout=30, what='every member in every registry')
    wait_for(lambda: all(len(n.request('GET', '/v1/members')[1]['members']) == n_all
                         for n in nodes), timeout=30, what='gossip sees every member')
    want = min(voters, n_all)
    wait_for(lambda: len(raft_status(raft_leader(nodes))['voters']) >= want, timeout=30,
             what='%d voters' % want)
    return nodes, op
