/*
 * agent_exec.h - the blocking work of agent runs, off the loop: a few helper
 * threads that run sandboxed agents (sandbox/sandbox.h), handing each
 * finished task back to the loop through one ev_async.
 *
 * Owns: the threads, the bounded queue of tasks waiting for one, the list of
 * finished tasks, and per agent version a warm pool of pre-started sandboxes
 * (sbx_pool) so a stateless run skips the sandbox start-up; a pool is refilled
 * once the answer had AGENT_EXEC_REFILL_DELAY_MS to leave and no task waits.
 *
 * Never touches: node state (a task carries copies of everything it needs
 * and only text in and out, so no JSON object is shared across threads), the
 * mesh, the registry. The loop thread alone submits and collects.
 */
#ifndef NX_NODE_AGENT_EXEC_H
#define NX_NODE_AGENT_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "sandbox/sandbox.h"

#define AGENT_EXEC_THREADS_DEFAULT 4
#define AGENT_EXEC_THREADS_MAX 64
#define AGENT_EXEC_QUEUE_MAX 1024 /* tasks waiting for a thread; more are refused */
#define AGENT_EXEC_POOLS_MAX 16   /* agent versions with a warm pool */
#define AGENT_EXEC_ERR_MAX 512
#define AGENT_EXEC_REFILL_DELAY_MS 5 /* a warm pool is refilled this long after an answer */

struct ev_loop;
struct agent_exec;

enum agent_task_kind {
    AGENT_TASK_RUN = 1,
    AGENT_TASK_START = 2, /* start a long-running agent and hand its run back (deployments) */
};

struct agent_task {
    enum agent_task_kind kind;
    void *owner; /* the submitter's, untouched */
    /* RUN in: the unpacked bundle (its manifest.json is read by the thread), the
     * input as JSON text, the pool key (bundle hash hex; "" = no pool) */
    char bundle_dir[4096];
    char pool_key[65];
    char *input_json;   /* owned */
    char *context_json; /* owned: a session's context (stateful agent); NULL: stateless run */
    /* RUN out */
    char *output_json; /* owned: the agent's output, or NULL */
    char *context_out; /* owned: the new session context the agent returned, or NULL */
    char *agent_error; /* owned: the agent's error reply, or NULL */
    struct sbx_usage usage;
    bool warm; /* served by a pre-started sandbox */
    /* CLOCK_MONOTONIC µs: submitted, taken by a thread, finished (queue and run time) */
    uint64_t submitted_us, started_us, finished_us;
    /* rc 0: the agent ran (and answered or not); else err says why it could not */
    int rc;
    char err[AGENT_EXEC_ERR_MAX];
    /* START in: bundle_dir, and stderr_fd, the write end the agent's stderr goes to
     * (closed by the thread once the agent started, -1 for none); the run has no
     * timeout. START out: run, started (owned: the submitter takes it and sets it
     * NULL; agent_task_free kills and reaps a run nobody took), rc and err as for RUN. */
    int stderr_fd;
    struct sbx_run *run;
    uint64_t tag;            /* the submitter's, untouched */
    struct agent_task *next; /* private */
};

/* Called on the loop thread for every finished task; it owns the task then. */
typedef void (*agent_exec_done_fn)(void *ctx, struct agent_task *task);

/* pool_size: warm sandboxes per agent version (0: none). */
int agent_exec_start(struct agent_exec **out, struct ev_loop *loop, unsigned threads,
                     unsigned pool_size, agent_exec_done_fn done, void *ctx) NX_MUST_USE;
/* Stops the threads after their current task; queued tasks are dropped (freed). */
void agent_exec_stop(struct agent_exec *ex);

/* Takes the task on success; NX_ERR_FULL when the queue is full (caller keeps it). */
int agent_exec_submit(struct agent_exec *ex, struct agent_task *task) NX_MUST_USE;

struct agent_task *agent_task_new(enum agent_task_kind kind);
void agent_task_free(struct agent_task *t);

/* Tasks queued and running, for the status answer. */
size_t agent_exec_busy(const struct agent_exec *ex);

#endif
