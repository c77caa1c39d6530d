/*
 * agent_exec.c - helper threads for agent runs (agent_exec.h).
 *
 * One mutex guards the waiting queue, the finished list and the pools; a
 * condition variable wakes the threads; one ev_async wakes the loop, which
 * drains the finished list in its own thread and calls the done callback per
 * task, in completion order.
 *
 * Warm pools: the first run of an agent version creates a pool of
 * pre-started sandboxes for it (at most AGENT_EXEC_POOLS_MAX versions, first
 * come). A run takes one, sends its request, and the thread refills the pool
 * after answering, so the start-up cost moves off the request's path. A warm
 * sandbox that fails before answering (it may have outlived its own
 * timeout while waiting) costs nothing but a cold retry.
 */
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_exec.h"

struct warm_pool {
    char key[65];
    char bundle_dir[4096];
    struct sbx_manifest manifest;
    struct sbx_config cfg; /* points into manifest */
    struct sbx_pool *pool;
    pthread_mutex_t lock; /* one taker or refiller at a time */
    atomic_bool broken;   /* not (yet) usable: cold runs only; read without the lock */
};

struct agent_exec {
    struct ev_loop *loop;
    ev_async wake;
    agent_exec_done_fn done;
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct agent_task *queue_head, *queue_tail;
    size_t queued, running;
    struct agent_task *finished; /* LIFO; reversed when drained */
    bool stopping;
    unsigned n_threads;
    pthread_t threads[AGENT_EXEC_THREADS_MAX];
    unsigned pool_size;
    struct warm_pool *pools[AGENT_EXEC_POOLS_MAX];
    size_t n_pools;
};

struct agent_task *agent_task_new(enum agent_task_kind kind)
{
    struct agent_task *t = calloc(1, sizeof *t);
    if (t) {
        t->kind = kind;
        t->stderr_fd = -1;
    }
    return t;
}

void agent_task_free(struct agent_task *t)
{
    if (t == NULL)
        return;
    free(t->input_json);
    free(t->context_json);
    free(t->output_json);
    free(t->context_out);
    free(t->agent_error);
    if (t->run) { /* started, but nobody took it */
        struct sbx_usage u;
        sbx_run_kill(t->run);
        if (sbx_run_wait(t->run, &u) != 0)
            NX_WARN("agent_exec_reap_failed", "bundle_dir=%s", t->bundle_dir);
        sbx_run_free(t->run);
    }
    if (t->stderr_fd >= 0)
        close(t->stderr_fd);
    free(t);
}

/* ---- runs ------------------------------------------------------------------- */

static struct warm_pool *pool_for(struct agent_exec *ex, const struct agent_task *t)
{
    if (ex->pool_size == 0 || t->pool_key[0] == '\0')
        return NULL;
    pthread_mutex_lock(&ex->mu);
    struct warm_pool *wp = NULL;
    for (size_t i = 0; i < ex->n_pools && wp == NULL; i++)
        if (strcmp(ex->pools[i]->key, t->pool_key) == 0)
            wp = ex->pools[i];
    if (wp == NULL && ex->n_pools < AGENT_EXEC_POOLS_MAX && (wp = calloc(1, sizeof *wp)) != NULL) {
        snprintf(wp->key, sizeof wp->key, "%s", t->pool_key);
        snprintf(wp->bundle_dir, sizeof wp->bundle_dir, "%s", t->bundle_dir);
        pthread_mutex_init(&wp->lock, NULL);
        atomic_store(&wp->broken, true); /* until created below, under its own lock */
        ex->pools[ex->n_pools++] = wp;
        pthread_mutex_lock(&wp->lock);
        pthread_mutex_unlock(&ex->mu);
        char err[SBX_ERR_MAX];
        if (sbx_manifest_load(wp->bundle_dir, &wp->manifest, err, sizeof err) == 0) {
            sbx_config_init(&wp->cfg);
            wp->cfg.bundle_dir = wp->bundle_dir;
            sbx_config_from_manifest(&wp->cfg, &wp->manifest, false);
            atomic_store(&wp->broken, wp->manifest.kind != SBX_KIND_STATELESS ||
                                          sbx_pool_create(&wp->cfg, ex->pool_size, &wp->pool, err,
                                                          sizeof err) != 0);
        }
        if (atomic_load(&wp->broken))
            NX_WARN("agent_pool_off", "bundle=%.16s error=\"%s\"", wp->key, err);
        pthread_mutex_unlock(&wp->lock);
        return atomic_load(&wp->broken) ? NULL : wp;
    }
    pthread_mutex_unlock(&ex->mu);
    return wp && !atomic_load(&wp->broken) ? wp : NULL;
}

static void keep_reply(struct agent_task *t, struct sbx_reply *reply)
{
    if (reply->output)
        t->output_json = json_dumps(reply->output, JSON_COMPACT | JSON_ENCODE_ANY);
    if (reply->error)
        t->agent_error = strdup(reply->error);
    else if (reply->context && !json_is_null(reply->context))
        t->context_out = json_dumps(reply->context, JSON_COMPACT | JSON_ENCODE_ANY);
    sbx_reply_clear(reply);
}

/* A warm run: 0 when the agent answered; <0 when the caller should run cold. The
 * pool is refilled by the caller after the task went back to the loop (refill). */
static int run_warm(struct warm_pool *wp, struct agent_task *t, json_t *input)
{
    struct sbx_run *run = NULL;
    char err[SBX_ERR_MAX];
    pthread_mutex_lock(&wp->lock);
    int rc = sbx_pool_take(wp->pool, &run, err, sizeof err);
    pthread_mutex_unlock(&wp->lock);
    if (rc != 0)
        return rc;
    struct sbx_reply reply = {0};
    rc = sbx_call(run, 1, input, NULL, 0, &reply, err, sizeof err);
    sbx_run_close_stdin(run);
    if (rc < 0)
        sbx_run_kill(run);
    int wrc = sbx_run_wait(run, &t->usage);
    sbx_run_free(run);
    if (rc == 0 && wrc == 0) {
        keep_reply(t, &reply);
        t->warm = true;
    } else {
        sbx_reply_clear(&reply);
        rc = rc < 0 ? rc : wrc;
    }
    return rc;
}

/* Starts sandboxes until the pool is full again: off the request's path. */
static void refill(struct warm_pool *wp)
{
    char err[SBX_ERR_MAX];
    pthread_mutex_lock(&wp->lock);
    if (sbx_pool_refill(wp->pool, err, sizeof err) != 0)
        NX_WARN("agent_pool_refill_failed", "bundle=%.16s error=\"%s\"", wp->key, err);
    pthread_mutex_unlock(&wp->lock);
}

/* Runs the task; returns the warm pool it took a sandbox from (to refill), or NULL. */
static struct warm_pool *do_run(struct agent_exec *ex, struct agent_task *t)
{
    json_error_t jerr;
    json_t *input = json_loads(t->input_json ? t->input_json : "null", JSON_DECODE_ANY, &jerr);
    if (input == NULL) {
        t->rc = NX_ERR_INVAL;
        snprintf(t->err, sizeof t->err, "input is not JSON: %s", jerr.text);
        return NULL;
    }
    json_t *context = NULL;
    if (t->context_json &&
        (context = json_loads(t->context_json, JSON_DECODE_ANY, &jerr)) == NULL) {
        json_decref(input);
        t->rc = NX_ERR_INVAL;
        snprintf(t->err, sizeof t->err, "session context is not JSON: %s", jerr.text);
        return NULL;
    }
    /* a session call is its own sandbox: the context is the state, not a warm process */
    struct warm_pool *wp = t->context_json ? NULL : pool_for(ex, t);
    if (wp && run_warm(wp, t, input) == 0) {
        json_decref(input);
        t->rc = 0;
        return wp;
    }
    struct sbx_manifest m;
    char err[SBX_ERR_MAX] = "";
    t->rc = sbx_manifest_load(t->bundle_dir, &m, err, sizeof err);
    if (t->rc == 0) {
        struct sbx_config cfg;
        sbx_config_init(&cfg);
        cfg.bundle_dir = t->bundle_dir;
        sbx_config_from_manifest(&cfg, &m, false);
        struct sbx_reply reply;
        t->rc = sbx_run_once(&cfg, input, context, &reply, &t->usage, err, sizeof err);
        keep_reply(t, &reply);
        sbx_manifest_free(&m);
    }
    if (t->rc != 0)
        snprintf(t->err, sizeof t->err, "%s", err[0] ? err : nx_strerror(t->rc));
    json_decref(input);
    json_decref(context);
    return wp; /* a warm attempt that failed took a sandbox too */
}

/* Starts a long-running agent (START); the loop supervises it from there. */
static void do_start(struct agent_task *t)
{
    struct sbx_manifest m;
    char err[SBX_ERR_MAX] = "";
    t->rc = sbx_manifest_load(t->bundle_dir, &m, err, sizeof err);
    if (t->rc == 0) {
        struct sbx_config cfg;
        sbx_config_init(&cfg);
        cfg.bundle_dir = t->bundle_dir;
        sbx_config_from_manifest(&cfg, &m, false);
        cfg.limits.timeout_ms = 0; /* runs until it is stopped */
        cfg.stderr_fd = t->stderr_fd;
        t->rc = sbx_run_start(&cfg, &t->run, err, sizeof err);
        if (t->rc != 0)
            t->run = NULL;
        sbx_manifest_free(&m);
    }
    if (t->stderr_fd >= 0) { /* the agent holds its own copy now */
        close(t->stderr_fd);
        t->stderr_fd = -1;
    }
    if (t->rc != 0)
        snprintf(t->err, sizeof t->err, "%s", err[0] ? err : nx_strerror(t->rc));
}

/* ---- threads and the loop ---------------------------------------------------- */

/*
 * Waits on cv up to ms milliseconds (or for a signal); mu held. Used to let
 * an answer leave before the CPU goes to starting the next warm sandbox.
 */
static void wait_ms(struct agent_exec *ex, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    (void)pthread_cond_timedwait(&ex->cv, &ex->mu, &ts);
}

static void *worker(void *arg)
{
    struct agent_exec *ex = arg;
    struct warm_pool *to_refill = NULL;
    pthread_mutex_lock(&ex->mu);
    for (;;) {
        /* A refill waits until no task is waiting and AGENT_EXEC_REFILL_DELAY_MS
         * passed: on a busy machine starting a sandbox competes for the CPU with
         * the answer on its way out (the loop, the requester, the client). */
        if (to_refill && !ex->stopping && ex->queue_head == NULL)
            wait_ms(ex, AGENT_EXEC_REFILL_DELAY_MS);
        if (to_refill && !ex->stopping && ex->queue_head == NULL) {
            pthread_mutex_unlock(&ex->mu);
            refill(to_refill);
            to_refill = NULL;
            pthread_mutex_lock(&ex->mu);
        }
        while (!ex->stopping && ex->queue_head == NULL && to_refill == NULL)
            pthread_cond_wait(&ex->cv, &ex->mu);
        if (ex->stopping)
            break;
        if (ex->queue_head == NULL)
            continue; /* woken with a refill pending: do it first */
        struct agent_task *t = ex->queue_head;
        ex->queue_head = t->next;
        if (ex->queue_head == NULL)
            ex->queue_tail = NULL;
        ex->queued--;
        ex->running++;
        pthread_mutex_unlock(&ex->mu);
        t->started_us = nx_clock_mono_us();
        struct warm_pool *used = NULL;
        if (t->kind == AGENT_TASK_START)
            do_start(t);
        else
            used = do_run(ex, t);
        t->finished_us = nx_clock_mono_us();
        if (used && to_refill && used != to_refill)
            refill(to_refill); /* one pending refill per thread */
        if (used)
            to_refill = used;
        pthread_mutex_lock(&ex->mu);
        ex->running--;
        t->next = ex->finished;
        ex->finished = t;
        ev_async_send(ex->loop, &ex->wake);
    }
    pthread_mutex_unlock(&ex->mu);
    return NULL;
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent_exec *ex = w->data;
    pthread_mutex_lock(&ex->mu);
    struct agent_task *list = ex->finished;
    ex->finished = NULL;
    pthread_mutex_unlock(&ex->mu);
    struct agent_task *ordered = NULL;
    while (list) { /* LIFO to completion order */
        struct agent_task *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    while (ordered) {
        struct agent_task *next = ordered->next;
        ordered->next = NULL;
        ex->done(ex->ctx, ordered);
        ordered = next;
    }
}

int agent_exec_start(struct agent_exec **out, struct ev_loop *loop, unsigned threads,
                     unsigned pool_size, agent_exec_done_fn done, void *ctx)
{
    if (threads == 0 || threads > AGENT_EXEC_THREADS_MAX || pool_size > SBX_POOL_MAX)
        return NX_ERR_INVAL;
    struct agent_exec *ex = calloc(1, sizeof *ex);
    if (ex == NULL)
        return NX_ERR_NOMEM;
    ex->loop = loop;
    ex->done = done;
    ex->ctx = ctx;
    ex->pool_size = pool_size;
    pthread_mutex_init(&ex->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wait_ms counts on the monotonic clock */
    pthread_cond_init(&ex->cv, &ca);
    pthread_condattr_destroy(&ca);
    ev_async_init(&ex->wake, on_wake);
    ex->wake.data = ex;
    ev_async_start(loop, &ex->wake);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&ex->threads[i], NULL, worker, ex) != 0) {
            agent_exec_stop(ex);
            return NX_ERR_IO;
        }
        ex->n_threads++;
    }
    *out = ex;
    return NX_OK;
}

void agent_exec_stop(struct agent_exec *ex)
{
    if (ex == NULL)
        return;
    pthread_mutex_lock(&ex->mu);
    ex->stopping = true;
    pthread_cond_broadcast(&ex->cv);
    pthread_mutex_unlock(&ex->mu);
    for (unsigned i = 0; i < ex->n_threads; i++)
        pthread_join(ex->threads[i], NULL);
    ev_async_stop(ex->loop, &ex->wake);
    for (struct agent_task *t = ex->queue_head, *next; t; t = next) {
        next = t->next;
        agent_task_free(t);
    }
    for (struct agent_task *t = ex->finished, *next; t; t = next) {
        next = t->next;
        agent_task_free(t);
    }
    for (size_t i = 0; i < ex->n_pools; i++) {
        struct warm_pool *wp = ex->pools[i];
        sbx_pool_free(wp->pool);
        if (wp->manifest.name)
            sbx_manifest_free(&wp->manifest);
        pthread_mutex_destroy(&wp->lock);
        free(wp);
    }
    pthread_mutex_destroy(&ex->mu);
    pthread_cond_destroy(&ex->cv);
    free(ex);
}

int agent_exec_submit(struct agent_exec *ex, struct agent_task *task)
{
    pthread_mutex_lock(&ex->mu);
    if (ex->queued >= AGENT_EXEC_QUEUE_MAX) {
        pthread_mutex_unlock(&ex->mu);
        return NX_ERR_FULL;
    }
    task->next = NULL;
    task->submitted_us = nx_clock_mono_us();
    if (ex->queue_tail)
        ex->queue_tail->next = task;
    else
        ex->queue_head = task;
    ex->queue_tail = task;
    ex->queued++;
    pthread_cond_signal(&ex->cv);
    pthread_mutex_unlock(&ex->mu);
    return NX_OK;
}

size_t agent_exec_busy(const struct agent_exec *ex)
{
    struct agent_exec *m = (struct agent_exec *)ex; /* the lock, not the state, changes */
    pthread_mutex_lock(&m->mu);
    size_t n = m->queued + m->running;
    pthread_mutex_unlock(&m->mu);
    return n;
}
