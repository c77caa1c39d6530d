/*
 * bench_envelope.c - what the NCAP envelope costs on top of the signature.
 *
 * For a few body sizes: envelopes sealed per second (encode + sign) next to
 * raw crypto_sign_detached over the same body bytes, and envelopes opened per
 * second (decode + every check + verify + replay window) next to raw
 * crypto_sign_verify_detached, measured in the same run. Times are this
 * thread's CPU time (CLOCK_THREAD_CPUTIME_ID), and each figure is the best of
 * ROUNDS interleaved rounds, to keep other processes on the (shared) machine
 * out of the ratio.
 * Goal: overhead under 10%.
 */
#include <sodium.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proto/ncap.h"

#define ROUNDS 7
#define NOW_MS 1764000000000ull

struct size_case {
    size_t body_bytes;
    size_t iters;
};

static const struct size_case CASES[] = {{64, 1500}, {1024, 1500}, {16384, 300}, {262144, 30}};

static uint8_t pk[NCAP_KEY_BYTES], sk[NCAP_SECRET_BYTES], self_pk[NCAP_KEY_BYTES];
static uint8_t cluster[NCAP_CLUSTER_ID_BYTES];

static bool trust_all(void *ctx, const uint8_t key[NCAP_KEY_BYTES])
{
    (void)ctx;
    (void)key;
    return true;
}

static uint64_t cpu_us(void)
{
    struct timespec ts;
    NX_ASSERT(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void header_for(struct ncap_header *h, uint64_t seq)
{
    ncap_header_init(h, cluster, pk, self_pk, NCAP_MSG_GOSSIP, seq, NOW_MS);
}

/* Each returns the seconds one round took for n operations. */
static double time_sign(const uint8_t *body, size_t len, size_t n)
{
    uint8_t sig[NCAP_SIG_BYTES];
    uint64_t t0 = cpu_us();
    for (size_t i = 0; i < n; i++)
        crypto_sign_detached(sig, NULL, body, len, sk);
    return (double)(cpu_us() - t0) / 1e6;
}

static double time_verify(const uint8_t *body, size_t len, size_t n)
{
    uint8_t sig[NCAP_SIG_BYTES];
    crypto_sign_detached(sig, NULL, body, len, sk);
    uint64_t t0 = cpu_us();
    for (size_t i = 0; i < n; i++)
        NX_ASSERT(crypto_sign_verify_detached(sig, body, len, pk) == 0);
    return (double)(cpu_us() - t0) / 1e6;
}

static double time_seal(const uint8_t *body, size_t len, size_t n, uint8_t **out, size_t *out_len)
{
    struct ncap_header h;
    uint64_t t0 = cpu_us();
    for (size_t i = 0; i < n; i++) {
        header_for(&h, i + 1);
        free(out[i]);
        NX_ASSERT(ncap_seal(&h, body, len, sk, &out[i], &out_len[i]) == NX_OK);
    }
    return (double)(cpu_us() - t0) / 1e6;
}

static double time_open(uint8_t **env, const size_t *env_len, size_t n)
{
    struct ncap_verifier_config cfg = {.is_trusted = trust_all};
    memcpy(cfg.cluster_id, cluster, sizeof cluster);
    memcpy(cfg.self_pk, self_pk, sizeof self_pk);
    struct ncap_verifier *v;
    NX_ASSERT(ncap_verifier_new(&cfg, &v) == NX_OK);
    struct ncap_msg m;
    uint64_t t0 = cpu_us();
    for (size_t i = 0; i < n; i++) {
        NX_ASSERT(ncap_open(v, env[i], env_len[i], NOW_MS, &m) == NX_OK);
        ncap_msg_free(&m);
    }
    double s = (double)(cpu_us() - t0) / 1e6;
    ncap_verifier_free(v);
    return s;
}

static double min2(double a, double b)
{
    return a < b ? a : b;
}

int main(void)
{
    NX_ASSERT(sodium_init() >= 0);
    uint8_t seed[crypto_sign_SEEDBYTES] = {7}, other_sk[NCAP_SECRET_BYTES];
    crypto_sign_seed_keypair(pk, sk, seed);
    seed[0] = 8;
    crypto_sign_seed_keypair(self_pk, other_sk, seed);
    memset(cluster, 0xc1, sizeof cluster);

    printf("%10s %10s %10s %9s %10s %10s %9s\n", "body_B", "seal/s", "sign/s", "seal_ovh", "open/s",
           "verify/s", "open_ovh");
    int worst_small = 0;
    for (size_t c = 0; c < NX_ARRAY_LEN(CASES); c++) {
        size_t len = CASES[c].body_bytes, n = CASES[c].iters;
        uint8_t *body = malloc(len);
        uint8_t **env = calloc(n, sizeof *env);
        size_t *env_len = calloc(n, sizeof *env_len);
        NX_ASSERT(body && env && env_len);
        randombytes_buf(body, len);
        double sign = 1e9, seal = 1e9, verify = 1e9, open = 1e9;
        for (int r = 0; r < ROUNDS; r++) {
            sign = min2(sign, time_sign(body, len, n));
            seal = min2(seal, time_seal(body, len, n, env, env_len));
            verify = min2(verify, time_verify(body, len, n));
            open = min2(open, time_open(env, env_len, n));
        }
        double seal_ovh = (seal / sign - 1) * 100, open_ovh = (open / verify - 1) * 100;
        printf("%10zu %10.0f %10.0f %8.1f%% %10.0f %10.0f %8.1f%%\n", len, n / seal, n / sign,
               seal_ovh, n / open, n / verify, open_ovh);
        if (c == 0)
            worst_small = seal_ovh > open_ovh ? (int)seal_ovh : (int)open_ovh;
        for (size_t i = 0; i < n; i++)
            free(env[i]);
        free(env);
        free(env_len);
        free(body);
    }
    printf("baseline: raw libsodium Ed25519 over the body bytes, same run, thread CPU time; "
           "ovh = envelope time / raw time - 1 (goal < 10%%); smallest body: %d%%\n",
           worst_small);
    return 0;
}
