/*
 * sandbox.h - running untrusted agent bundles in isolation on this machine.
 *
 * Owns: the agent bundle manifest (parse and validate), the isolated run of
 * one agent process (namespaces, a read-only root, pivot_root, an
 * unprivileged uid, no capabilities, no_new_privs, seccomp, rlimits, a
 * cgroup v1 or v2 group, a wall-clock timeout), the newline-delimited JSON
 * protocol spoken with the agent over its stdin and stdout, usage accounting
 * per run, the three agent kinds (stateless with a warm pool, stateful
 * sessions whose context is persisted through a small store interface,
 * long-running agents restarted with exponential backoff).
 *
 * Never touches: the cluster (placement, forwarding, metering in the ledger),
 * the network on behalf of an agent, the node's libev loop (the blocking
 * calls here are meant to be driven from a helper thread, or replaced by
 * loop watchers over sbx_run_stdout_fd/sbx_run_pidfd and sbx_run_poll).
 *
 * Documents: docs/sandbox.md (isolation, manifest, bundle layout) and
 * docs/agent-protocol.md (framing on stdin/stdout).
 */
#ifndef NX_SANDBOX_H
#define NX_SANDBOX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- limits ----------------------------------------------------------- */

#define SBX_ARGV_MAX 32                      /* entrypoint words */
#define SBX_PATH_MAX 512                     /* any path we build */
#define SBX_ERR_MAX 256                      /* error message buffer size */
#define SBX_EXTRA_BINDS_MAX 8                /* extra read-only binds per run */
#define SBX_FRAME_MAX_BYTES (1u << 20)       /* one protocol line */
#define SBX_OUTPUT_MAX_BYTES (8u << 20)      /* everything one run may print */
#define SBX_STDERR_TAIL_BYTES 4096           /* stderr kept for diagnostics */
#define SBX_MANIFEST_MAX_BYTES (256u << 10)  /* manifest.json size */
#define SBX_CAPS_MAX 64                      /* capabilities in a manifest */
#define SBX_NAME_MAX 64                      /* manifest name length */
#define SBX_VERSION_MAX 32                   /* manifest version length */
#define SBX_DESCRIPTION_MAX 1024             /* capability description length */
#define SBX_MEMORY_MAX_BYTES (64ull << 30)   /* largest memory a manifest may ask */
#define SBX_CPU_MAX_MILLICORES 256000u       /* largest CPU a manifest may ask */
#define SBX_GPUS_MAX 64u                     /* largest GPU count */
#define SBX_TIMEOUT_MAX_MS (24ull * 3600000) /* longest timeout a manifest may ask */
#define SBX_SESSION_ID_MAX 128               /* session id length */
#define SBX_CONTEXT_MAX_BYTES (1u << 20)     /* persisted session context */
#define SBX_POOL_MAX 64                      /* warm pool size */

/* Defaults (docs/sandbox.md lists them). */
#define SBX_DEFAULT_UID 65534u
#define SBX_DEFAULT_GID 65534u
#define SBX_DEFAULT_CPU_MILLICORES 1000u
#define SBX_DEFAULT_MEMORY_BYTES (256ull << 20)
#define SBX_DEFAULT_PIDS_MAX 64u
#define SBX_DEFAULT_TMP_BYTES (64ull << 20)
#define SBX_DEFAULT_TIMEOUT_MS 30000ull
#define SBX_DEFAULT_NOFILE 256u
#define SBX_DEFAULT_NPROC 4096u
#define SBX_DEFAULT_FSIZE_BYTES (64ull << 20)
#define SBX_CPU_PERIOD_US 100000u

/* ---- manifest --------------------------------------------------------- */

enum sbx_kind { SBX_KIND_STATELESS = 0, SBX_KIND_STATEFUL = 1, SBX_KIND_LONG_RUNNING = 2 };

struct sbx_capability {
    char *name;            /* owned */
    char *description;     /* owned, may be NULL */
    json_t *input_schema;  /* owned reference, may be NULL */
    json_t *output_schema; /* owned reference, may be NULL */
};

struct sbx_manifest {
    char *name;    /* owned */
    char *version; /* owned */
    enum sbx_kind kind;
    char *entrypoint[SBX_ARGV_MAX + 1]; /* owned strings, NULL-terminated */
    size_t entrypoint_len;
    uint32_t cpu_millicores;
    uint64_t memory_bytes;
    uint32_t gpus;
    bool network;
    uint64_t timeout_ms;
    struct sbx_capability *caps; /* owned array */
    size_t caps_len;
};

/*
 * Parses and validates manifest JSON. On error returns NX_ERR_INVAL (or
 * NX_ERR_DECODE, NX_ERR_TOO_BIG) and writes "manifest: <field>: <problem>"
 * into err. On success *out is filled and owned by the caller
 * (sbx_manifest_free). json is borrowed.
 */
int sbx_manifest_parse(const char *json, size_t len, struct sbx_manifest *out, char *err,
                       size_t err_len) NX_MUST_USE;
/* Reads <bundle_dir>/manifest.json and parses it. */
int sbx_manifest_load(const char *bundle_dir, struct sbx_manifest *out, char *err,
                      size_t err_len) NX_MUST_USE;
void sbx_manifest_free(struct sbx_manifest *m);
const char *sbx_kind_name(enum sbx_kind kind);

/* ---- one isolated run -------------------------------------------------- */

/*
 * Protections the escape tests switch off one at a time, to prove that each
 * test can fail. Production code never sets these (the node passes 0); a
 * run with any bit set logs a warning.
 */
enum sbx_weaken {
    SBX_WEAKEN_SECCOMP = 1u << 0,   /* no seccomp filter */
    SBX_WEAKEN_UID = 1u << 1,       /* stay uid 0 */
    SBX_WEAKEN_CAPS = 1u << 2,      /* keep capabilities */
    SBX_WEAKEN_NNP = 1u << 3,       /* no PR_SET_NO_NEW_PRIVS */
    SBX_WEAKEN_NOSUID = 1u << 4,    /* bundle mounted without nosuid */
    SBX_WEAKEN_RO = 1u << 5,        /* bundle and runtime binds writable */
    SBX_WEAKEN_PIVOT = 1u << 6,     /* keep the host root (no new root) */
    SBX_WEAKEN_PIDNS = 1u << 7,     /* no new PID namespace (host /proc) */
    SBX_WEAKEN_NETNS = 1u << 8,     /* no new network namespace */
    SBX_WEAKEN_CLOSE_FDS = 1u << 9, /* keep inherited fds */
    SBX_WEAKEN_PIDS = 1u << 10,     /* no pids limit (rlimit NPROC stays) */
    SBX_WEAKEN_MEMORY = 1u << 11,   /* no memory limit */
    SBX_WEAKEN_CPU = 1u << 12,      /* no CPU quota */
    SBX_WEAKEN_TMP_SIZE = 1u << 13, /* /tmp not size-limited (tmpfs default size) */
    SBX_WEAKEN_TIMEOUT = 1u << 14,  /* no wall-clock timeout */
    SBX_WEAKEN_NPROC = 1u << 15,    /* no RLIMIT_NPROC */
};

struct sbx_bind {
    const char *host_path;    /* borrowed */
    const char *sandbox_path; /* borrowed, absolute */
};

struct sbx_limits {
    uint32_t cpu_millicores; /* cfs quota; 0 = none */
    uint64_t memory_bytes;   /* 0 = none */
    uint32_t pids_max;       /* 0 = none */
    uint64_t tmp_bytes;      /* size of the private /tmp */
    uint64_t timeout_ms;     /* wall clock; 0 = none */
    uint32_t nofile;         /* RLIMIT_NOFILE */
    uint32_t nproc;          /* RLIMIT_NPROC (per uid, host wide: a second fence) */
    uint64_t fsize_bytes;    /* RLIMIT_FSIZE */
};

struct sbx_config {
    const char *bundle_dir;  /* borrowed; host path, mounted read-only at /agent */
    const char *const *argv; /* borrowed; NULL-terminated. argv[0] absolute inside the
                                sandbox (/usr/bin/python3) or relative to /agent */
    const char *const *envp; /* borrowed; NULL = a minimal default environment */
    struct sbx_limits limits;
    bool allow_network;                 /* share the host network namespace */
    uint32_t uid, gid;                  /* unprivileged ids the agent runs as */
    const char *cgroup_root;            /* borrowed; NULL = /sys/fs/cgroup */
    const char *cgroup_parent;          /* borrowed; NULL = this process's own group */
    bool no_cgroup;                     /* run without a cgroup (tests, or no cgroupfs) */
    const struct sbx_bind *extra_binds; /* borrowed, read-only binds */
    size_t extra_binds_len;
    int stderr_fd;   /* agent stderr goes here; -1 = captured (sbx_run_stderr_tail) */
    uint32_t weaken; /* enum sbx_weaken bits; tests only */
};

struct sbx_usage {
    uint64_t wall_us;
    uint64_t cpu_user_us;
    uint64_t cpu_sys_us;
    uint64_t cpu_total_us;      /* from the cgroup when there is one, else rusage */
    uint64_t peak_memory_bytes; /* cgroup peak, else max rss */
    uint64_t throttled_us;      /* time throttled by the CPU quota */
    uint64_t nr_throttled;
    uint64_t output_bytes;
    int exit_code;   /* valid when term_signal == 0 */
    int term_signal; /* signal that ended the agent, 0 if it exited */
    bool oom_killed;
    bool timed_out;
    bool output_truncated; /* killed for printing more than SBX_OUTPUT_MAX_BYTES */
    bool from_cgroup;      /* CPU and memory figures came from the cgroup */
};

/* Fills cfg with the defaults above; the caller sets bundle_dir and argv. */
void sbx_config_init(struct sbx_config *cfg);
/* Copies a manifest's resources, network wish and timeout into cfg. */
void sbx_config_from_manifest(struct sbx_config *cfg, const struct sbx_manifest *m,
                              bool network_granted);

struct sbx_run;

/*
 * Starts one isolated agent. Returns once the entrypoint was exec'd (or the
 * child reported why it could not be). On failure err holds "step: problem
 * (errno text)". *out is owned by the caller (sbx_run_free).
 */
int sbx_run_start(const struct sbx_config *cfg, struct sbx_run **out, char *err,
                  size_t err_len) NX_MUST_USE;
int sbx_run_stdin_fd(const struct sbx_run *run);  /* write end of the agent's stdin */
int sbx_run_stdout_fd(const struct sbx_run *run); /* read end of the agent's stdout */
int sbx_run_pid(const struct sbx_run *run);
/* A pidfd of the agent (readable once it exited): for a loop's watcher. Borrowed. */
int sbx_run_pidfd(const struct sbx_run *run);
/*
 * Non-blocking step for an event loop: reads what stdout and stderr hold,
 * notes an exit, and enforces the deadline and output cap. Call it when
 * sbx_run_stdout_fd or sbx_run_pidfd is readable, and at the deadline.
 */
int sbx_run_poll(struct sbx_run *run) NX_MUST_USE;
/* True once the agent (PID 1 of its namespace) has exited. */
bool sbx_run_exited(const struct sbx_run *run);
/* Closes the agent's stdin (end of requests). Idempotent. */
void sbx_run_close_stdin(struct sbx_run *run);
/* SIGKILLs the agent (its whole PID namespace). */
void sbx_run_kill(struct sbx_run *run);
/*
 * Waits for the agent to end, killing it at the run's deadline, drains its
 * stdout (kept, up to SBX_OUTPUT_MAX_BYTES, see sbx_run_output) and stderr,
 * reads the cgroup usage and removes the cgroup. Call once.
 */
int sbx_run_wait(struct sbx_run *run, struct sbx_usage *usage) NX_MUST_USE;
/* stdout not consumed by sbx_call, collected by sbx_run_wait. Borrowed. */
const char *sbx_run_output(const struct sbx_run *run, size_t *len);
/* Last bytes the agent wrote to stderr (when captured). Borrowed, NUL-terminated. */
const char *sbx_run_stderr_tail(const struct sbx_run *run);
void sbx_run_free(struct sbx_run *run);

/* Human-readable usage, several lines, into buf. */
void sbx_usage_format(const struct sbx_usage *u, char *buf, size_t len);
/* Usage as a new JSON object (owned by the caller). */
json_t *sbx_usage_to_json(const struct sbx_usage *u);

/* ---- protocol (docs/agent-protocol.md) ---------------------------------- */

struct sbx_reply {
    json_t *output;  /* owned; NULL when the agent answered with an error */
    json_t *context; /* owned; may be NULL */
    char *error;     /* owned; NULL on success */
};

/*
 * Sends {"id":id,"input":input,"context":context} and reads lines until the
 * reply with the same id, passing {"log":..} lines to the logger. Enforces
 * SBX_FRAME_MAX_BYTES and the run's deadline (and timeout_ms if sooner; 0 =
 * only the run's deadline). input and context are borrowed (context may be
 * NULL). On success reply is filled (sbx_reply_clear frees it).
 */
int sbx_call(struct sbx_run *run, uint64_t id, json_t *input, json_t *context, uint64_t timeout_ms,
             struct sbx_reply *reply, char *err, size_t err_len) NX_MUST_USE;
void sbx_reply_clear(struct sbx_reply *reply);

/*
 * One stateless request: start, call, close stdin, wait. reply and usage are
 * filled even when the call fails (reply empty, usage of the run). Returns 0
 * when the agent answered (the answer may itself be an error reply).
 */
int sbx_run_once(const struct sbx_config *cfg, json_t *input, json_t *context,
                 struct sbx_reply *reply, struct sbx_usage *usage, char *err,
                 size_t err_len) NX_MUST_USE;

/* ---- warm pool of stateless sandboxes --------------------------------- */

struct sbx_pool;
/* Pre-starts `size` runs of cfg (copied by reference: cfg must outlive the pool). */
int sbx_pool_create(const struct sbx_config *cfg, size_t size, struct sbx_pool **out, char *err,
                    size_t err_len) NX_MUST_USE;
/* Takes a started run (owned by the caller) and leaves a hole until sbx_pool_refill. */
int sbx_pool_take(struct sbx_pool *pool, struct sbx_run **out, char *err,
                  size_t err_len) NX_MUST_USE;
/* Starts runs until the pool is full again. */
int sbx_pool_refill(struct sbx_pool *pool, char *err, size_t err_len) NX_MUST_USE;
void sbx_pool_free(struct sbx_pool *pool);

/* ---- stateful sessions --------------------------------------------------- */

/*
 * Where a session's context lives between calls. The node stores it in its
 * node-local RocksDB column; tests use the in-memory store. Contexts are
 * JSON text of at most SBX_CONTEXT_MAX_BYTES.
 */
struct sbx_session_store_ops {
    /* *json (owned by the caller, NUL-terminated) or NX_ERR_NOT_FOUND. */
    int (*load)(void *impl, const char *session_id, char **json);
    int (*save)(void *impl, const char *session_id, const char *json);
    int (*remove)(void *impl, const char *session_id);
    void (*close)(void *impl);
};

struct sbx_session_store {
    const struct sbx_session_store_ops *ops;
    void *impl;
};

/* RocksDB-backed store in its own directory (synced writes). */
int sbx_session_store_rocksdb_open(const char *path, struct sbx_session_store *out, char *err,
                                   size_t err_len) NX_MUST_USE;
/* In-memory store for tests. */
int sbx_session_store_mem_open(struct sbx_session_store *out) NX_MUST_USE;
void sbx_session_store_close(struct sbx_session_store *store);

/*
 * One call of a stateful session: loads the context (none on the first
 * call), runs the agent once with it, and persists the context the agent
 * returned before handing back the reply. A failed call keeps the old context.
 */
int sbx_session_call(struct sbx_session_store *store, const char *session_id,
                     const struct sbx_config *cfg, json_t *input, struct sbx_reply *reply,
                     struct sbx_usage *usage, char *err, size_t err_len) NX_MUST_USE;

/* ---- long-running supervision --------------------------------------------- */

/*
 * Restart policy as a pure state machine (no I/O, time passed in):
 *
 *   STOPPED --start--> RUNNING --exit--> BACKOFF --delay over--> RUNNING
 *      ^                  |                  |
 *      +------stop--------+-------stop-------+
 *
 * The delay doubles from base_ms up to max_ms with each exit; a run that
 * lasted at least stable_ms resets it to base_ms.
 */
enum sbx_sup_state { SBX_SUP_STOPPED = 0, SBX_SUP_RUNNING, SBX_SUP_BACKOFF };

struct sbx_backoff {
    uint64_t base_ms, max_ms, stable_ms;
    enum sbx_sup_state state;
    uint32_t failures; /* consecutive short runs */
    uint64_t started_ms;
    uint64_t restart_at_ms;
    uint64_t restarts;
};

void sbx_backoff_init(struct sbx_backoff *b, uint64_t base_ms, uint64_t max_ms, uint64_t stable_ms);
void sbx_backoff_on_start(struct sbx_backoff *b, uint64_t now_ms);
/* Records an exit; returns the delay before the next start. */
uint64_t sbx_backoff_on_exit(struct sbx_backoff *b, uint64_t now_ms);
void sbx_backoff_on_stop(struct sbx_backoff *b);

struct sbx_supervise_opts {
    uint64_t base_ms, max_ms, stable_ms;
    uint64_t max_restarts; /* stop after this many restarts; 0 = unlimited */
    volatile int *stop;    /* borrowed; set non-zero to stop (signal-safe) */
    void (*on_exit)(void *arg, const struct sbx_usage *u, uint64_t next_delay_ms);
    void *arg;
};

/* Blocking supervisor for `nexus agent run-local` and tests. */
int sbx_supervise(const struct sbx_config *cfg, const struct sbx_supervise_opts *opts,
                  struct sbx_backoff *out_state, char *err, size_t err_len) NX_MUST_USE;

#endif
