/*
 * deploy_kv.h - the pure pieces of deployments (deploy.h): the replicated
 * KV entry of one replica (key and JSON value), the bounded ring of a
 * replica's log lines, and the splitting of an agent's output into lines.
 *
 * Owns: those formats and their limits. Never touches: I/O, clocks (times
 * come in), Raft, the sandbox.
 *
 * KV layout, one key per replica, written by the Raft leader only:
 *
 *   _deploy/NAME/REPLICA -> {"node": HEX or "", "agent", "version",
 *                            "bundle_hash", "why"?, "since_ms"}
 *
 * NAME is the deployment's ledger name, REPLICA its 0-based index in
 * decimal; node "" means pending and why says what nothing could offer;
 * since_ms is the leader's wall clock when the entry was written.
 */
#ifndef NX_NODE_DEPLOY_KV_H
#define NX_NODE_DEPLOY_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "bundle.h"
#include "deploy_plan.h"
#include "ledger/ledger.h"
#include "node.h"

#define DEPLOY_KV_PREFIX "_deploy/"
#define DEPLOY_KEY_MAX 96        /* prefix, a name, '/', an index, NUL */
#define DEPLOY_LOG_LINES 256     /* kept per replica */
#define DEPLOY_LOG_LINE_MAX 1024 /* bytes per kept line, NUL included (longer ones are cut) */

struct deploy_entry {
    char name[DEPLOY_NAME_MAX + 1];
    uint32_t replica;
    bool assigned; /* node holds its home; false: pending */
    uint8_t node[NODE_PK_BYTES];
    char agent[LEDGER_STR_CAP], version[LEDGER_STR_CAP];
    char bundle_hash[BUNDLE_HASH_HEX_LEN + 1];
    char why[PLACE_REASON_MAX];
    uint64_t since_ms;
};

/* "_deploy/NAME/R" into name and replica; false unless well formed (R < DEPLOY_REPLICAS_MAX). */
bool deploy_key_parse(const char *key, size_t klen, char name[DEPLOY_NAME_MAX + 1],
                      uint32_t *replica);
/* The key of a replica; NX_ERR_INVAL for a name that is empty or too long. */
int deploy_key_format(char out[DEPLOY_KEY_MAX], const char *name, uint32_t replica) NX_MUST_USE;

/* An entry from its key and value; false (e zeroed) when either is malformed. */
bool deploy_entry_parse(const char *key, size_t klen, const char *val, size_t vlen,
                        struct deploy_entry *e);
/* The value's JSON text (malloc'd, caller frees), or NULL without memory. */
char *deploy_entry_encode(const struct deploy_entry *e);

/* One kept line. */
struct deploy_log_line {
    uint64_t ts_ms;
    char text[DEPLOY_LOG_LINE_MAX];
};

/* The last DEPLOY_LOG_LINES lines of one replica (about 260 KiB: allocate it). */
struct deploy_log {
    struct deploy_log_line lines[DEPLOY_LOG_LINES];
    size_t head, count;
    uint64_t total; /* lines ever pushed */
};

void deploy_log_push(struct deploy_log *l, uint64_t ts_ms, const char *text, size_t len);
/* The k-th oldest kept line (k < count), or NULL. */
const struct deploy_log_line *deploy_log_get(const struct deploy_log *l, size_t k);

/*
 * What an agent's stdout line says for the log: the text of {"log": "..."},
 * other JSON of {"log": X} compactly, anything else as it is. Writes at most
 * cap - 1 bytes and a NUL into out; returns the length written.
 */
size_t deploy_log_text(const char *line, size_t len, char *out, size_t cap);

/*
 * Splits buf[0..*len) into lines: fn gets each complete line (without its
 * newline); a partial line stays at the start of buf. A partial line that
 * fills cap - 1 bytes is handed over as it is (cut), so the buffer never
 * stalls. Call it after appending what a read returned.
 */
typedef void (*deploy_line_fn)(void *arg, const char *line, size_t len);
void deploy_lines_split(char *buf, size_t *len, size_t cap, deploy_line_fn fn, void *arg);

#endif
