/*
 * agent_sdk.c - see agent_sdk.h. One request per line in, one reply per
 * line out, flushed at once (the node waits for the line).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk/agent_sdk.h"

static int write_line(json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return -1;
    int rc =
        (fputs(text, stdout) < 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0) ? -1 : 0;
    free(text);
    return rc;
}

void nxa_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_t *msg = json_pack("{s:s}", "log", buf);
    if (msg && write_line(msg) < 0)
        fprintf(stderr, "nxa_log: stdout failed\n");
    json_decref(msg);
}

static json_t *error_reply(json_int_t id, const char *text)
{
    return json_pack("{s:I, s:s}", "id", id, "error", text);
}

static json_t *handle_line(const char *line, size_t len, nxa_handler_fn handler, void *arg)
{
    json_error_t jerr;
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *id = req ? json_object_get(req, "id") : NULL;
    if (!req || !json_is_object(req) || !json_is_integer(id)) {
        json_decref(req);
        return error_reply(0, "request is not a JSON object with an integer id");
    }
    json_int_t rid = json_integer_value(id);
    json_t *input = json_object_get(req, "input");
    json_t *context = json_object_get(req, "context");
    struct nxa_result res = {0};
    int rc = handler(arg, input ? input : json_null(), context ? context : json_null(), &res);
    json_t *reply;
    if (rc != 0) {
        json_decref(res.output);
        json_decref(res.context);
        reply = error_reply(rid, res.error[0] ? res.error : "agent failed");
    } else {
        reply =
            json_pack("{s:I, s:o, s:o}", "id", rid, "output", res.output ? res.output : json_null(),
                      "context", res.context ? res.context : json_null());
    }
    json_decref(req);
    return reply;
}

int nxa_run(nxa_handler_fn handler, void *arg)
{
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break;
        if (n > 0 && line[n - 1] == '\n')
            n--;
        if (n == 0)
            continue;
        json_t *reply = (size_t)n > NXA_FRAME_MAX_BYTES
                            ? error_reply(0, "request exceeds the frame limit")
                            : handle_line(line, (size_t)n, handler, arg);
        if (!reply || write_line(reply) < 0) {
            json_decref(reply);
            rc = 1;
            break;
        }
        json_decref(reply);
    }
    free(line);
    return rc;
}
