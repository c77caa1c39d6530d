#!/usr/bin/env python3
"""Benchmark: signed ping round trip between two real nodes on loopback
(p50/p99 over the samples each node keeps), next to a plain TCP echo round
trip measured in the same run, and the resident memory of an idle node."""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'integration'))
from harness import Cluster, wait_for  # noqa: E402

SAMPLES = 200


def tcp_echo_rtt_us(n=SAMPLES):
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)

    def serve():
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(64)
            if not d:
                break
            c.sendall(d)
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    cl = socket.create_connection(srv.getsockname())
    cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        cl.sendall(b'x' * 8)
        cl.recv(64)
        rtts.append((time.perf_counter_ns() - t0) // 1000)
        time.sleep(0.002)
    cl.close()
    srv.close()
    rtts.sort()
    return rtts[(n - 1) // 2], rtts[(n * 99 - 1) // 100]


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def gossip_ten_nodes(period_ms=1000, measure_s=10.0):
    """CPU and memory per node for 10 gossiping nodes (default 1 s protocol period)."""
    c = Cluster()
    try:
        cid = os.urandom(16).hex()
        nodes = [c.node('g%d' % i, cid) for i in range(10)]
        for n in nodes:
            n.trust(*nodes)
        args = ('--gossip-interval-ms', str(period_ms), '--ping-interval-ms', '3600000')
        nodes[0].start(*args)
        for n in nodes[1:]:
            n.start(*args, peers=[nodes[0]])
        wait_for(lambda: all(len([m for m in n.request('GET', '/v1/members')[1]['members']
                                  if m['state'] == 'alive']) == 10 for n in nodes),
                 timeout=60, what='full view')
        before = [cpu_seconds(n.proc.pid) for n in nodes]
        time.sleep(measure_s)
        after = [cpu_seconds(n.proc.pid) for n in nodes]
        rss = [rss_kib(n.proc.pid) for n in nodes]
        g = nodes[0].request('GET', '/v1/members')[1]['gossip']
        cpu_pct = [(a - b) / measure_s * 100 for a, b in zip(after, before)]
        return sum(cpu_pct) / len(cpu_pct), max(cpu_pct), sum(rss) / len(rss), max(rss), g
    finally:
        c.close()


def main():
    c = Cluster()
    try:
        cid = os.urandom(16).hex()
        a, b = c.node('a', cid), c.node('b', cid)
        a.trust(b)
        b.trust(a)
        a.start('--ping-interval-ms', '10', peers=[b])
        b.start('--ping-interval-ms', '10', peers=[a])
        wait_for(lambda: a.status()['peers'][0].get('rtt_samples', 0) >= SAMPLES,
                 timeout=60, what='ping samples')
        # The node keeps its last 256 samples: wait until the connection set-up
        # (CURVE handshake, first reconnect) has rotated out of the ring.
        time.sleep(3.5)
        pa = a.status()['peers'][0]
        idle = c.node('idle', cid)
        idle.start()
        time.sleep(1.0)
        idle_rss = rss_kib(idle.proc.pid)
        busy_rss = rss_kib(a.proc.pid)
    finally:
        c.close()
    tcp50, tcp99 = tcp_echo_rtt_us()
    print('%-44s %12s %12s %8s' % ('metric', 'nexus', 'baseline', 'ratio'))
    print('%-44s %10dus %10dus %7.1fx' % ('ping round trip p50 (signed, CURVE; vs TCP echo)',
                                          pa['rtt_p50_us'], tcp50, pa['rtt_p50_us'] / max(tcp50, 1)))
    print('%-44s %10dus %10dus %7.1fx' % ('ping round trip p99', pa['rtt_p99_us'], tcp99,
                                          pa['rtt_p99_us'] / max(tcp99, 1)))
    print('%-44s %9d KiB' % ('idle node resident memory (no peers)', idle_rss))
    print('%-44s %9d KiB' % ('node resident memory (1 peer, 100 pings/s)', busy_rss))
    print('(ping RTT includes seal+open on both sides: 2 signatures and 2 verifications;'
          ' ping timer 10 ms)')
    cpu_mean, cpu_max, rss_mean, rss_max, g = gossip_ten_nodes()
    print()
    print('%-44s %12s %12s' % ('10 nodes gossiping (1 s period)', 'mean', 'max'))
    print('%-44s %11.2f%% %11.2f%%' % ('CPU per node (one core = 100%)', cpu_mean, cpu_max))
    print('%-44s %8d KiB %8d KiB' % ('resident memory per node', rss_mean, rss_max))
    print('%-44s %12d' % ('gossip bytes sent by node 0 so far', g['bytes_sent']))


if __name__ == '__main__':
    main()
