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


if __name__ == '__main__':
    main()
