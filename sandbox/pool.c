/*
 * pool.c - a warm pool of stateless sandboxes: runs started ahead of time,
 * each waiting on its stdin for the one request it will serve, so that a
 * request pays a pipe round trip instead of a sandbox start. The pool is
 * refilled explicitly (from the loop's idle time, later) so that taking a
 * run never blocks on starting one.
 */
#include <stdlib.h>
#include <string.h>

#include "sandbox/internal.h"

struct sbx_pool {
    const struct sbx_config *cfg; /* borrowed; outlives the pool */
    size_t size, len;
    struct sbx_run *runs[SBX_POOL_MAX]; /* owned */
};

int sbx_pool_create(const struct sbx_config *cfg, size_t size, struct sbx_pool **out, char *err,
                    size_t err_len)
{
    if (size == 0 || size > SBX_POOL_MAX) {
        sbx_errf(err, err_len, "pool: size must be 1 to %d", SBX_POOL_MAX);
        return NX_ERR_INVAL;
    }
    struct sbx_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NX_ERR_NOMEM;
    pool->cfg = cfg;
    pool->size = size;
    int rc = sbx_pool_refill(pool, err, err_len);
    if (rc < 0) {
        sbx_pool_free(pool);
        return rc;
    }
    *out = pool;
    return 0;
}

int sbx_pool_take(struct sbx_pool *pool, struct sbx_run **out, char *err, size_t err_len)
{
    while (pool->len > 0) {
        struct sbx_run *run = pool->runs[--pool->len];
        pool->runs[pool->len] = NULL;
        /* A warm run that died while waiting (killed, crashed) is no use. */
        if (sbx_run_pump(run, 0) == 0 && !run->exited) {
            *out = run;
            return 0;
        }
        sbx_run_free(run);
    }
    /* Empty pool: start one now rather than fail the request. */
    return sbx_run_start(pool->cfg, out, err, err_len);
}

int sbx_pool_refill(struct sbx_pool *pool, char *err, size_t err_len)
{
    while (pool->len < pool->size) {
        int rc = sbx_run_start(pool->cfg, &pool->runs[pool->len], err, err_len);
        if (rc < 0)
            return rc;
        pool->len++;
    }
    return 0;
}

void sbx_pool_free(struct sbx_pool *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->len; i++)
        sbx_run_free(pool->runs[i]);
    free(pool);
}
