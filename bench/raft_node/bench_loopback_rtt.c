/*
 * bench_loopback_rtt - the network floor under Raft on one machine: the round
 * trip of a small message over a loopback TCP connection (TCP_NODELAY)
 * between two processes, each blocked in read() like a node's loop. The
 * commit latency goal of issue 5 is "one fsync + two loopback round trips +
 * 0.1 ms" (client -> leader -> follower and back); bench_raft_node.py takes
 * the round trip from here and the fsync from bench_rocksdb_sync.
 *
 *   bench_loopback_rtt [BYTES]   prints "RESULT rtt bytes=N p50_us=X p99_us=Y"
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"

#define ROUNDS 4000
#define WARMUP 200
#define MAX_BYTES 65536

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool io_all(int fd, uint8_t *buf, size_t n, bool writing)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = writing ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);
        if (k <= 0)
            return false;
        done += (size_t)k;
    }
    return true;
}

static void echo_forever(int fd, size_t bytes)
{
    uint8_t *buf = malloc(bytes);
    while (buf && io_all(fd, buf, bytes, false) && io_all(fd, buf, bytes, true)) {
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    size_t bytes = argc > 1 ? strtoul(argv[1], NULL, 10) : 200;
    if (bytes == 0 || bytes > MAX_BYTES) {
        fprintf(stderr, "bench_loopback_rtt: BYTES must be 1..%d\n", MAX_BYTES);
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
        perror("bench_loopback_rtt: listen");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("bench_loopback_rtt: fork");
        return 1;
    }
    int one = 1;
    if (child == 0) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            _exit(1);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        echo_forever(fd, bytes);
    }
    close(ls);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("bench_loopback_rtt: connect");
        kill(child, SIGKILL);
        return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t *buf = calloc(1, bytes);
    uint64_t *lat = calloc(ROUNDS, sizeof *lat);
    int rc = 0;
    for (int i = 0; buf && lat && i < WARMUP + ROUNDS; i++) {
        uint64_t t0 = nx_clock_mono_us();
        if (!io_all(fd, buf, bytes, true) || !io_all(fd, buf, bytes, false)) {
            fprintf(stderr, "bench_loopback_rtt: echo failed\n");
            rc = 1;
            break;
        }
        if (i >= WARMUP)
            lat[i - WARMUP] = nx_clock_mono_us() - t0;
    }
    close(fd);
    waitpid(child, NULL, 0);
    if (rc == 0 && buf && lat) {
        qsort(lat, ROUNDS, sizeof *lat, cmp_u64);
        printf("RESULT rtt bytes=%zu p50_us=%llu p99_us=%llu\n", bytes,
               (unsigned long long)lat[ROUNDS / 2], (unsigned long long)lat[ROUNDS * 99 / 100]);
    }
    free(buf);
    free(lat);
    return rc;
}
