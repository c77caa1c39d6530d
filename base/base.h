/*
 * base.h - the small shared base every NexusCore module stands on.
 *
 * Owns: the project-wide error codes and their text, the leveled key=value
 * logger, the host clock, a deterministic PRNG for the pure cores and the
 * simulator, hex helpers and the always-on assert.
 *
 * Never touches: the network, the disk (beyond writing log lines to stderr),
 * libev, libzmq or RocksDB. Pure cores (gossip/, consensus/) may include this
 * header; they must not call nx_clock_* (time is passed to them) and must
 * seed their own struct nx_rng from the host.
 */
#ifndef NX_BASE_H
#define NX_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NX_MUST_USE __attribute__((warn_unused_result))
#define NX_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define NX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Error codes. Actions return 0 (NX_OK) or one of these negative values.
 * The list is closed on purpose: add a code only when a caller must be able
 * to tell it apart from the existing ones.
 */
enum nx_err {
    NX_OK = 0,
    NX_ERR_NOMEM = -1,          /* allocation failed */
    NX_ERR_INVAL = -2,          /* bad argument or bad input from a user */
    NX_ERR_IO = -3,             /* a syscall failed; errno was logged */
    NX_ERR_CORRUPT = -4,        /* stored data failed a check */
    NX_ERR_TOO_BIG = -5,        /* a size limit was exceeded */
    NX_ERR_DECODE = -6,         /* bytes do not parse */
    NX_ERR_BAD_SIG = -7,        /* signature does not verify */
    NX_ERR_WRONG_CLUSTER = -8,  /* message for another cluster */
    NX_ERR_UNKNOWN_SENDER = -9, /* sender key not trusted */
    NX_ERR_REPLAY = -10,        /* sequence number already seen or too old */
    NX_ERR_STALE = -11,         /* timestamp too far in the past */
    NX_ERR_FUTURE = -12,        /* timestamp too far in the future */
    NX_ERR_VERSION = -13,       /* unsupported protocol version */
    NX_ERR_FULL = -14,          /* a bounded queue or table is full */
    NX_ERR_NOT_FOUND = -15,
    NX_ERR_EXISTS = -16,
    NX_ERR_PERM = -17, /* not allowed */
    NX_ERR_TIMEOUT = -18,
    NX_ERR_NOT_LEADER = -19,
    NX_ERR_UNAVAILABLE = -20, /* cannot serve now (no quorum, shutting down) */
    NX_ERR_AGAIN = -21,       /* try again later */
    NX_ERR_EXPIRED = -22,
    NX_ERR_STATE = -23, /* operation not valid in the current state */
    NX_ERR_WRONG_RECIPIENT = -24,
    NX_ERR_LIMIT = -25,    /* a resource limit was hit (quota, rlimit, cgroup) */
    NX_ERR_INTERNAL = -26, /* a bug; logged */
    NX_ERR__COUNT = 27
};

/* Text for an error code; never NULL. */
const char *nx_strerror(int err);

/*
 * Always-on assertion for cheap invariants: logs file and line, then aborts.
 * Never use it on input from the network, the disk or an agent.
 */
#define NX_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            nx_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)
_Noreturn void nx_assert_fail(const char *expr, const char *file, int line);

/* ---- logging ---------------------------------------------------------- */

enum nx_log_level { NX_LOG_DEBUG = 0, NX_LOG_INFO = 1, NX_LOG_WARN = 2, NX_LOG_ERROR = 3 };

/* Parses "debug", "info", "warn" or "error"; -1 when unknown. */
int nx_log_level_parse(const char *name);
void nx_log_set_level(enum nx_log_level level);
enum nx_log_level nx_log_get_level(void);
/* Short node id added to every line as node=...; NULL removes it. Copied. */
void nx_log_set_node(const char *node_id);

/*
 * One line per event on stderr:
 *   ts=2026-11-24T05:04:42.123Z level=info node=ab12cd34 event=started k=v ...
 * `event` is a short snake_case name; `fmt` formats the key=value fields.
 */
void nx_log(enum nx_log_level level, const char *event, const char *fmt, ...) NX_PRINTF(3, 4);
void nx_logv(enum nx_log_level level, const char *event, const char *fmt, va_list ap);

#define NX_DEBUG(ev, ...) nx_log(NX_LOG_DEBUG, ev, __VA_ARGS__)
#define NX_INFO(ev, ...) nx_log(NX_LOG_INFO, ev, __VA_ARGS__)
#define NX_WARN(ev, ...) nx_log(NX_LOG_WARN, ev, __VA_ARGS__)
#define NX_ERROR(ev, ...) nx_log(NX_LOG_ERROR, ev, __VA_ARGS__)

/* ---- host clock (hosts only: pure cores receive time as input) -------- */

uint64_t nx_clock_mono_ms(void); /* CLOCK_MONOTONIC in ms */
uint64_t nx_clock_mono_us(void); /* CLOCK_MONOTONIC in µs */
uint64_t nx_clock_wall_ms(void); /* CLOCK_REALTIME in ms since the epoch */

/* ---- deterministic PRNG (xoshiro256**) --------------------------------- */

struct nx_rng {
    uint64_t s[4];
};

/* Seeds from one 64-bit value (expanded with splitmix64). */
void nx_rng_seed(struct nx_rng *rng, uint64_t seed);
uint64_t nx_rng_next(struct nx_rng *rng);
/* Uniform in [0, bound); bound must be > 0. Unbiased. */
uint64_t nx_rng_below(struct nx_rng *rng, uint64_t bound);
/* Uniform double in [0, 1). */
double nx_rng_unit(struct nx_rng *rng);

/* ---- hex --------------------------------------------------------------- */

/* Writes 2*len hex chars plus NUL into out (size >= 2*len+1). */
void nx_hex_encode(char *out, const uint8_t *in, size_t len);
/* Decodes exactly 2*out_len hex chars; 0 or NX_ERR_INVAL. */
int nx_hex_decode(uint8_t *out, size_t out_len, const char *hex) NX_MUST_USE;

#endif
