/*
 * sigmemo.c - the verified-signature memo (ledger.h, ledger_cmd_precheck).
 *
 * Why: the node checks a command's signature when the API receives it, so
 * that junk never takes a Raft log slot, and the state machine checks it
 * again at apply, as it must on every replica. On the member that received
 * the command that was two Ed25519 verifications, the most expensive step of
 * a transfer. The memo lets apply reuse the first check for the very same
 * bytes: it keys on BLAKE2b-256 of the whole command (signature included),
 * which apply computes anyway for the idempotency record.
 *
 * A direct-mapped table: slot = low bits of the hash; a new entry replaces
 * whatever was there; apply consumes the entry it uses. Bounded memory, O(1),
 * and a lost entry only costs one verification.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

_Static_assert((LEDGER_SIG_MEMO_SLOTS & (LEDGER_SIG_MEMO_SLOTS - 1)) == 0, "power of two");

struct ledger_sig_memo {
    uint8_t hash[LEDGER_SIG_MEMO_SLOTS][LEDGER_HASH_BYTES];
    bool used[LEDGER_SIG_MEMO_SLOTS];
};

static size_t slot_of(const uint8_t hash[LEDGER_HASH_BYTES])
{
    uint32_t v = (uint32_t)hash[0] | (uint32_t)hash[1] << 8 | (uint32_t)hash[2] << 16 |
                 (uint32_t)hash[3] << 24;
    return v & (LEDGER_SIG_MEMO_SLOTS - 1);
}

int ledger_sig_memo_enable(struct ledger *l)
{
    if (l->memo == NULL && (l->memo = calloc(1, sizeof *l->memo)) == NULL)
        return NX_ERR_NOMEM;
    return 0;
}

int ledger_cmd_precheck(struct ledger *l, const uint8_t *buf, size_t len)
{
    int rc = ledger_cmd_verify(buf, len);
    if (rc != 0 || l->memo == NULL)
        return rc;
    uint8_t h[LEDGER_HASH_BYTES];
    crypto_generichash(h, sizeof h, buf, len, NULL, 0);
    size_t i = slot_of(h);
    memcpy(l->memo->hash[i], h, sizeof h);
    l->memo->used[i] = true;
    return 0;
}

bool ledger_sig_memo_take(struct ledger *l, const uint8_t cmd_hash[LEDGER_HASH_BYTES])
{
    if (l->memo == NULL)
        return false;
    size_t i = slot_of(cmd_hash);
    if (!l->memo->used[i] || sodium_memcmp(l->memo->hash[i], cmd_hash, LEDGER_HASH_BYTES) != 0)
        return false;
    l->memo->used[i] = false;
    return true;
}

void ledger_fini(struct ledger *l)
{
    free(l->memo);
    l->memo = NULL;
}
