/*
 * err.c - text for the project-wide error codes, and the always-on assert.
 */
#include "base.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const err_text[NX_ERR__COUNT] = {
    [0] = "ok",
    [-NX_ERR_NOMEM] = "out of memory",
    [-NX_ERR_INVAL] = "invalid argument",
    [-NX_ERR_IO] = "input/output error",
    [-NX_ERR_CORRUPT] = "data is corrupt",
    [-NX_ERR_TOO_BIG] = "too big",
    [-NX_ERR_DECODE] = "malformed message",
    [-NX_ERR_BAD_SIG] = "bad signature",
    [-NX_ERR_WRONG_CLUSTER] = "wrong cluster",
    [-NX_ERR_UNKNOWN_SENDER] = "unknown sender",
    [-NX_ERR_REPLAY] = "replayed message",
    [-NX_ERR_STALE] = "timestamp too old",
    [-NX_ERR_FUTURE] = "timestamp in the future",
    [-NX_ERR_VERSION] = "unsupported version",
    [-NX_ERR_FULL] = "queue full",
    [-NX_ERR_NOT_FOUND] = "not found",
    [-NX_ERR_EXISTS] = "already exists",
    [-NX_ERR_PERM] = "permission denied",
    [-NX_ERR_TIMEOUT] = "timed out",
    [-NX_ERR_NOT_LEADER] = "not the leader",
    [-NX_ERR_UNAVAILABLE] = "unavailable",
    [-NX_ERR_AGAIN] = "try again",
    [-NX_ERR_EXPIRED] = "expired",
    [-NX_ERR_STATE] = "invalid state",
    [-NX_ERR_WRONG_RECIPIENT] = "wrong recipient",
    [-NX_ERR_LIMIT] = "resource limit reached",
    [-NX_ERR_INTERNAL] = "internal error",
};

const char *nx_strerror(int err)
{
    if (err > 0 || err <= -NX_ERR__COUNT || err_text[-err] == NULL)
        return "unknown error";
    return err_text[-err];
}

void nx_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "level=fatal event=assert_failed expr=\"%s\" file=%s line=%d\n", expr, file,
            line);
    abort();
}
