/*
 * lin.h - a linearizability checker for a key-value register history.
 *
 * Owns: a history of client operations (put/get/delete on keys, with invoke
 * and return times and an outcome) and the check that some order of them,
 * consistent with real time, is legal for a map of registers.
 *
 * Never touches: the system under test. Histories come from the Raft
 * simulator (tests/sim/raft) or, through lin_history_read_file, from a text
 * file written by a real-cluster test.
 *
 * The check is P-compositional (as Porcupine): each key is checked alone.
 * Per key it runs Wing & Gong's search with Lowe's improvements: a
 * doubly-linked list of call/return events with "lift"/"unlift" (just-in-time
 * linearization with undo) and a cache of (linearized set, register value)
 * configurations already explored.
 *
 * Outcomes: ok (the op took effect and, for get, returned `value`); fail (it
 * certainly had no effect: dropped); unknown (crash or timeout: it may or may
 * not have taken effect, at any time after its invocation; treated as never
 * returning; an unknown get is dropped since its result was not observed).
 *
 * Text format, one op per line, '#' starts a comment:
 *     client op key value invoke_us return_us ok|fail|unknown
 * op is put, get or delete; value is a token without spaces, or '-' for
 * "absent" (the result of a get on a missing key; ignored for delete).
 * return_us of an unknown or failed op may be '-'.
 */
#ifndef NX_LIN_H
#define NX_LIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define LIN_ABSENT INT64_MIN          /* the value of a missing key */
#define LIN_MAX_OPS (1u << 20)        /* ops in one history */
#define LIN_MAX_LINE 1024             /* bytes in one text line */
#define LIN_DEFAULT_STEPS 20000000ull /* search budget per key */
#define LIN_EXPLAIN_BYTES 1024

enum lin_kind { LIN_PUT = 0, LIN_GET = 1, LIN_DELETE = 2 };
enum lin_outcome { LIN_OK = 0, LIN_FAIL = 1, LIN_UNKNOWN = 2 };

struct lin_op {
    uint32_t client;
    enum lin_kind kind;
    uint64_t key;
    int64_t value; /* put: written value; get: observed value (LIN_ABSENT: none) */
    uint64_t invoke_us;
    uint64_t return_us; /* ignored for unknown ops */
    enum lin_outcome outcome;
    uint32_t line; /* source line (file histories), else 0 */
};

struct lin_history {
    struct lin_op *ops;
    size_t n;
    size_t cap;
    /* names of interned keys and values (file histories), owned */
    char **key_names;
    size_t n_keys;
    char **value_names;
    size_t n_values;
};

struct lin_result {
    bool linearizable;
    bool budget_exceeded; /* some key was not decided: counted as linearizable */
    uint64_t keys_checked;
    uint64_t ops_checked;
    uint64_t steps;
    char explanation[LIN_EXPLAIN_BYTES]; /* why not, when !linearizable */
};

void lin_history_init(struct lin_history *h);
void lin_history_free(struct lin_history *h);
/* Copies op into h. NX_ERR_INVAL (returns before invocation), NX_ERR_FULL, NX_ERR_NOMEM. */
int lin_history_add(struct lin_history *h, const struct lin_op *op) NX_MUST_USE;
/*
 * Appends the ops of a text history file. On NX_ERR_DECODE (or NX_ERR_IO) err
 * (size err_len) says which line and why.
 */
int lin_history_read_file(struct lin_history *h, const char *path, char *err,
                          size_t err_len) NX_MUST_USE;
/* Parses one text line; NX_ERR_DECODE with a reason in err. Blank/comment lines: NX_ERR_NOT_FOUND.
 */
int lin_history_parse_line(struct lin_history *h, const char *line, uint32_t line_no, char *err,
                           size_t err_len) NX_MUST_USE;
/* Checks h; max_steps bounds the search per key (0: LIN_DEFAULT_STEPS). */
int lin_check(const struct lin_history *h, uint64_t max_steps, struct lin_result *out) NX_MUST_USE;

#endif
