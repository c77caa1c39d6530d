/*
 * bench_ledger_load - signed ledger transfers through a node's whole write path
 * (HTTP API, Raft, apply) as fast as CONCURRENCY keep-alive connections can
 * post them (libcurl multi). Driven by bench_ledger_node.py, which starts the
 * cluster and makes the accounts; run alone (no arguments) it prints its usage
 * and exits 0.
 *
 *   bench_ledger_load HOST:PORT[,HOST:PORT...] TOKEN CONCURRENCY COUNT CLUSTER_ID_HEX KEY_FILE...
 *
 * Before the timed phase it signs COUNT transfers, round robin over the
 * accounts whose key files are given (account i pays account i+1, amount 1, so
 * none can overdraw), and hex-encodes each request body: the client's signing
 * and encoding are not measured. Requests go round robin to the listed APIs.
 * Then it measures, on this thread alone (CPU time, best of VERIFY_ROUNDS),
 * the raw single-core Ed25519 verify rate over the same commands' signed bytes.
 *
 *   -> "RESULT ok=N rejected=N errors=N rate=X p50_us=Y p99_us=Z verify_per_s=V"
 *
 * rate counts 200 answers (accepted transfers) per wall-clock second; a
 * rejection (422) or any other answer is counted, not retried.
 */
#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "ledger/ledger.h"
#include "node/ledger_host.h"

#define MAX_CONC 1024
#define MAX_APIS 8
#define MAX_KEYS 256
#define MAX_COUNT 1000000
#define VERIFY_ROUNDS 3
#define VERIFY_PER_ROUND 2000

struct key {
    char name[LEDGER_NAME_MAX + 1];
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
};

struct work {
    uint8_t **cmds; /* signed commands, for the verify baseline */
    size_t *cmd_lens;
    char **bodies; /* {"command":"<hex>"} */
    size_t count;
};

struct prop {
    CURL *easy;
    size_t item;
    uint64_t t0_us;
};

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

/* The account name of a key file: its base name without ".key". */
static int load_key(struct key *k, const char *path)
{
    char err[512];
    if (ledger_key_file_read(path, k->pk, k->sk, err, sizeof err) != NX_OK) {
        fprintf(stderr, "bench_ledger_load: %s\n", err);
        return -1;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strcspn(base, ".");
    if (n == 0 || n > LEDGER_NAME_MAX)
        return -1;
    memcpy(k->name, base, n);
    k->name[n] = '\0';
    return 0;
}

static int sign_all(struct work *w, const struct key *keys, size_t n_keys,
                    const uint8_t cid[LEDGER_CLUSTER_ID_BYTES])
{
    uint64_t now = nx_clock_wall_ms();
    for (size_t i = 0; i < w->count; i++) {
        const struct key *from = &keys[i % n_keys], *to = &keys[(i + 1) % n_keys];
        uint8_t idem[LEDGER_IDEM_BYTES];
        randombytes_buf(idem, sizeof idem);
        if (ledger_cmd_build_transfer(cid, from->sk, from->name, to->name, 1, idem, now,
                                      &w->cmds[i], &w->cmd_lens[i]) != NX_OK)
            return -1;
        size_t len = w->cmd_lens[i];
        w->bodies[i] = malloc(2 * len + 16);
        if (w->bodies[i] == NULL)
            return -1;
        memcpy(w->bodies[i], "{\"command\":\"", 12);
        nx_hex_encode(w->bodies[i] + 12, w->cmds[i], len);
        memcpy(w->bodies[i] + 12 + 2 * len, "\"}", 3);
    }
    return 0;
}

static uint64_t cpu_us(void)
{
    struct timespec ts;
    NX_ASSERT(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Raw Ed25519 verifications per CPU second of this thread, over the commands' signed bytes. */
static double verify_rate(const struct work *w)
{
    double best = 0;
    for (int r = 0; r < VERIFY_ROUNDS; r++) {
        size_t n = w->count < VERIFY_PER_ROUND ? w->count : VERIFY_PER_ROUND;
        uint64_t t0 = cpu_us();
        for (size_t i = 0; i < n; i++) {
            size_t signed_len = w->cmd_lens[i] - crypto_sign_BYTES;
            /* the author key is at offset 40 of every command (docs/ledger.md section 3) */
            if (crypto_sign_verify_detached(w->cmds[i] + signed_len, w->cmds[i], signed_len,
                                            w->cmds[i] + 40) != 0)
                abort();
        }
        double rate = n / ((cpu_us() - t0 + 1) / 1e6);
        if (rate > best)
            best = rate;
    }
    return best;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void start(struct prop *p, CURLM *multi, const struct work *w, size_t item, char urls[][128],
                  size_t n_urls)
{
    p->item = item;
    curl_easy_setopt(p->easy, CURLOPT_URL, urls[item % n_urls]);
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, w->bodies[item]);
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(w->bodies[item]));
    p->t0_us = nx_clock_mono_us();
    curl_multi_add_handle(multi, p->easy);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        printf("usage: bench_ledger_load HOST:PORT[,...] TOKEN CONCURRENCY COUNT CLUSTER_ID_HEX "
               "KEY_FILE... (driven by bench_ledger_node.py)\n");
        return 0;
    }
    int conc = atoi(argv[3]);
    long count = atol(argv[4]);
    uint8_t cid[LEDGER_CLUSTER_ID_BYTES];
    size_t n_keys = (size_t)(argc - 6);
    if (sodium_init() < 0 || conc < 1 || conc > MAX_CONC || count < 1 || count > MAX_COUNT ||
        n_keys < 2 || n_keys > MAX_KEYS || strlen(argv[5]) != 2 * sizeof cid ||
        nx_hex_decode(cid, sizeof cid, argv[5]) != NX_OK) {
        fprintf(stderr, "bench_ledger_load: bad arguments\n");
        return 2;
    }
    char urls[MAX_APIS][128];
    size_t n_urls = 0;
    for (char *api = strtok(argv[1], ","); api && n_urls < MAX_APIS; api = strtok(NULL, ","))
        snprintf(urls[n_urls++], sizeof urls[0], "http://%s/v1/ledger/commands", api);
    static struct key keys[MAX_KEYS];
    for (size_t i = 0; i < n_keys; i++)
        if (load_key(&keys[i], argv[6 + i]) != 0)
            return 2;
    struct work w = {calloc((size_t)count, sizeof(uint8_t *)),
                     calloc((size_t)count, sizeof(size_t)), calloc((size_t)count, sizeof(char *)),
                     (size_t)count};
    struct prop *props = calloc((size_t)conc, sizeof *props);
    uint64_t *lat = malloc((size_t)count * sizeof *lat);
    if (!w.cmds || !w.cmd_lens || !w.bodies || !props || !lat || sign_all(&w, keys, n_keys, cid))
        return 1;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[2]);
    struct curl_slist *headers = curl_slist_append(NULL, auth);
    headers = curl_slist_append(headers, "Expect:");
    headers = curl_slist_append(headers, "Content-Type: application/json");
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conc * 2);
    size_t next = 0, n_lat = 0, rejected = 0, errors = 0;
    uint64_t t_start = nx_clock_mono_us();
    for (int i = 0; i < conc && next < w.count; i++) {
        struct prop *p = &props[i];
        p->easy = curl_easy_init();
        curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
        curl_easy_setopt(p->easy, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, 30000L);
        start(p, multi, &w, next++, urls, n_urls);
    }
    int running = 1;
    while (running > 0) {
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct prop *p;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&p);
            long code = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            if (m->data.result == CURLE_OK && code == 200)
                lat[n_lat++] = nx_clock_mono_us() - p->t0_us;
            else if (m->data.result == CURLE_OK && code == 422)
                rejected++;
            else
                errors++;
            curl_multi_remove_handle(multi, p->easy);
            if (next < w.count) {
                start(p, multi, &w, next++, urls, n_urls);
                running++;
            }
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double took_s = (nx_clock_mono_us() - t_start) / 1e6;
    double vps = verify_rate(&w);
    qsort(lat, n_lat, sizeof *lat, cmp_u64);
    printf("RESULT ok=%zu rejected=%zu errors=%zu rate=%.0f p50_us=%llu p99_us=%llu "
           "verify_per_s=%.0f\n",
           n_lat, rejected, errors, n_lat / took_s,
           n_lat ? (unsigned long long)lat[(n_lat - 1) / 2] : 0ull,
           n_lat ? (unsigned long long)lat[(n_lat * 99 - 1) / 100] : 0ull, vps);
    for (int i = 0; i < conc; i++)
        if (props[i].easy)
            curl_easy_cleanup(props[i].easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    curl_global_cleanup();
    for (size_t i = 0; i < w.count; i++) {
        free(w.cmds[i]);
        free(w.bodies[i]);
    }
    for (size_t i = 0; i < n_keys; i++)
        sodium_memzero(keys[i].sk, sizeof keys[i].sk);
    free(w.cmds);
    free(w.cmd_lens);
    free(w.bodies);
    free(props);
    free(lat);
    return 0;
}
