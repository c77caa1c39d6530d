/*
 * fuzz_envelope.c - libFuzzer harness for ncap_open.
 *
 * Each input gets a fresh verifier (small sender table, so that is cheap and
 * every run is independent of the ones before). data[0] picks the mode:
 *
 *   even   the rest is handed to ncap_open as an envelope, as received.
 *   odd    the rest describes a valid envelope which is sealed here, then
 *          edited, then opened, so the fuzzer reaches the checks past the
 *          decoder (trust, time, replay, signature) without a seed corpus:
 *            [0] flags: bit0 signer is the untrusted key, bit1 broadcast,
 *                bit2 guest joins allowed, bit3 open a second time
 *            [1] type   [2..9] seq (LE)   [10..11] timestamp offset in s
 *                (int16 % 64: about half inside the window)
 *            [12] body length L, then L body bytes,
 *            then edits of 3 bytes: position (u16 LE, mod length), xor mask.
 *
 * Invariants checked on every input (abort = a finding):
 *   - an accepted envelope is exactly what ncap_seal makes of its fields, so
 *     the wire bytes are unique (signature and canonical encoding);
 *   - an accepted envelope opened again is NX_ERR_REPLAY;
 *   - every outcome is 0 or one of ncap_open's documented codes;
 *   - in the odd mode, an unedited envelope that the policy admits opens.
 */
#include "tests/fuzz/fuzz_envelope.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proto/ncap.h"

#define NOW_MS 1764000000000ull
#define MAX_EDITS 16
#define FUZZ_SENDERS 4

struct fuzz_keys {
    uint8_t trusted_pk[NCAP_KEY_BYTES], trusted_sk[NCAP_SECRET_BYTES];
    uint8_t guest_pk[NCAP_KEY_BYTES], guest_sk[NCAP_SECRET_BYTES];
    uint8_t self_pk[NCAP_KEY_BYTES];
    uint8_t cluster[NCAP_CLUSTER_ID_BYTES];
};

static const struct fuzz_keys *keys(void)
{
    static struct fuzz_keys k;
    static bool ready;
    if (!ready) {
        uint8_t seed[crypto_sign_SEEDBYTES], sk[NCAP_SECRET_BYTES];
        NX_ASSERT(sodium_init() >= 0);
        memset(seed, 1, sizeof seed);
        crypto_sign_seed_keypair(k.trusted_pk, k.trusted_sk, seed);
        memset(seed, 2, sizeof seed);
        crypto_sign_seed_keypair(k.guest_pk, k.guest_sk, seed);
        memset(seed, 3, sizeof seed);
        crypto_sign_seed_keypair(k.self_pk, sk, seed);
        memset(k.cluster, 0xc1, sizeof k.cluster);
        ready = true;
    }
    return &k;
}

static bool trust_one(void *ctx, const uint8_t pk[NCAP_KEY_BYTES])
{
    (void)ctx;
    return memcmp(pk, keys()->trusted_pk, NCAP_KEY_BYTES) == 0;
}

static bool documented(int rc)
{
    switch (rc) {
    case NX_OK:
    case NX_ERR_TOO_BIG:
    case NX_ERR_DECODE:
    case NX_ERR_VERSION:
    case NX_ERR_WRONG_CLUSTER:
    case NX_ERR_WRONG_RECIPIENT:
    case NX_ERR_UNKNOWN_SENDER:
    case NX_ERR_STALE:
    case NX_ERR_FUTURE:
    case NX_ERR_BAD_SIG:
    case NX_ERR_REPLAY:
        return true;
    default:
        return false;
    }
}

/* Opens bytes (once or twice), checks the invariants above, returns the first result. */
static int open_and_check(const uint8_t *bytes, size_t len, bool guests, bool twice)
{
    const struct fuzz_keys *k = keys();
    struct ncap_verifier_config cfg = {
        .is_trusted = trust_one, .max_senders = FUZZ_SENDERS, .allow_guest_join = guests};
    memcpy(cfg.cluster_id, k->cluster, NCAP_CLUSTER_ID_BYTES);
    memcpy(cfg.self_pk, k->self_pk, NCAP_KEY_BYTES);
    struct ncap_verifier *v;
    NX_ASSERT(ncap_verifier_new(&cfg, &v) == NX_OK);

    struct ncap_msg m;
    int rc = ncap_open(v, bytes, len, NOW_MS, &m);
    NX_ASSERT(documented(rc));
    if (rc == NX_OK) {
        const uint8_t *sk = m.guest ? k->guest_sk : k->trusted_sk;
        uint8_t *again;
        size_t again_len;
        NX_ASSERT(ncap_seal(&m.h, m.body, m.body_len, sk, &again, &again_len) == NX_OK);
        NX_ASSERT(again_len == len && memcmp(again, bytes, len) == 0);
        free(again);
        ncap_msg_free(&m);
        if (twice) {
            NX_ASSERT(ncap_open(v, bytes, len, NOW_MS, &m) == NX_ERR_REPLAY);
        }
    }
    ncap_verifier_free(v);
    return rc;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | p[i];
    return x;
}

static void sealed_mode(const uint8_t *data, size_t size)
{
    const struct fuzz_keys *k = keys();
    if (size < 13 || size < 13 + (size_t)data[12])
        return;
    uint8_t flags = data[0];
    int16_t offset_s = (int16_t)(data[10] | data[11] << 8) % 64;
    struct ncap_header h;
    ncap_header_init(&h, k->cluster, (flags & 1) ? k->guest_pk : k->trusted_pk,
                     (flags & 2) ? NULL : k->self_pk, data[1], le64(data + 2),
                     NOW_MS + (int64_t)offset_s * 1000);
    if (h.type == NCAP_MSG_NONE)
        h.type = NCAP_MSG_JOIN_REQUEST;
    const uint8_t *body = data + 13;
    size_t body_len = data[12];
    uint8_t *env;
    size_t len;
    if (ncap_seal(&h, body_len ? body : NULL, body_len, (flags & 1) ? k->guest_sk : k->trusted_sk,
                  &env, &len) != NX_OK)
        NX_ASSERT(!"sealing a valid header failed");
    const uint8_t *edit = body + body_len, *end = data + size;
    bool edited = false;
    for (int n = 0; n < MAX_EDITS && end - edit >= 3; n++, edit += 3) {
        env[(edit[0] | edit[1] << 8) % len] ^= edit[2];
        edited |= edit[2] != 0;
    }
    int rc = open_and_check(env, len, flags & 4, flags & 8);
    /* an untouched envelope that passes the policy must open */
    bool welcome = !(flags & 1) || ((flags & 4) && h.type == NCAP_MSG_JOIN_REQUEST);
    bool in_time =
        offset_s >= -(int)(NCAP_MAX_SKEW_MS / 1000) && offset_s <= (int)(NCAP_MAX_SKEW_MS / 1000);
    if (!edited && welcome && in_time)
        NX_ASSERT(rc == NX_OK);
    free(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 1) == FUZZ_MODE_RAW)
        (void)open_and_check(data + 1, size - 1, data[0] & 2, data[0] & 4);
    else
        sealed_mode(data + 1, size - 1);
    return 0;
}
