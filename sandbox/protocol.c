/*
 * protocol.c - the node's side of the agent protocol (docs/agent-protocol.md):
 * newline-delimited JSON on the agent's stdin and stdout.
 *
 *   node -> agent   {"id":7,"input":<json>,"context":<json or null>}
 *   agent -> node   {"id":7,"output":<json>,"context":<json>}   or
 *                   {"id":7,"error":"text"}                       and any number of
 *                   {"log":"text"}
 *
 * Each line is at most SBX_FRAME_MAX_BYTES; a run prints at most
 * SBX_OUTPUT_MAX_BYTES in total (run.c kills it past that). Anything that is
 * not a JSON object on its own line is a protocol error, not a crash: the
 * agent is untrusted input. Also here: sbx_run_once and the usage printers.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandbox/internal.h"

void sbx_reply_clear(struct sbx_reply *reply)
{
    json_decref(reply->output);
    json_decref(reply->context);
    free(reply->error);
    memset(reply, 0, sizeof *reply);
}

/*
 * write() to the agent's stdin without SIGPIPE: an agent that exits before
 * reading its request must not kill the node. SIGPIPE is blocked for the
 * call and a SIGPIPE it raised is consumed, leaving the process's signal
 * dispositions alone (the library does not own them).
 */
static ssize_t write_nosigpipe(int fd, const char *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n = write(fd, buf, len);
    int saved = errno;
    if (n < 0 && errno == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return n;
}

static int write_all(struct sbx_run *run, const char *buf, size_t len, uint64_t deadline_us,
                     char *err, size_t err_len)
{
    size_t off = 0;
    while (off < len) {
        if (run->stdin_w < 0) {
            sbx_errf(err, err_len, "protocol: stdin already closed");
            return NX_ERR_STATE;
        }
        ssize_t n = write_nosigpipe(run->stdin_w, buf + off, len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN) {
            sbx_errf(err, err_len, "protocol: write request: %s", strerror(errno));
            return errno == EPIPE ? NX_ERR_UNAVAILABLE : NX_ERR_IO;
        }
        /* Pipe full: keep reading its output so a chatty agent cannot deadlock us. */
        if (run->exited || run->timed_out) {
            sbx_errf(err, err_len, "protocol: agent ended before reading its request");
            return run->timed_out ? NX_ERR_TIMEOUT : NX_ERR_UNAVAILABLE;
        }
        if (deadline_us && nx_clock_mono_us() >= deadline_us) {
            sbx_errf(err, err_len, "protocol: timed out writing the request");
            return NX_ERR_TIMEOUT;
        }
        if (sbx_run_pump(run, 5) < 0)
            return NX_ERR_IO;
    }
    return 0;
}

/* Removes the first `len` bytes (a line and its newline) from the stdout buffer. */
static void consume(struct sbx_run *run, size_t len)
{
    memmove(run->out, run->out + len, run->out_len - len);
    run->out_len -= len;
    run->out[run->out_len] = '\0';
}

static void log_line(json_t *log)
{
    if (json_is_string(log)) {
        NX_INFO("agent_log", "msg=\"%.*s\"", 512, json_string_value(log));
    } else {
        char *s = json_dumps(log, JSON_COMPACT);
        NX_INFO("agent_log", "msg=%.*s", 512, s ? s : "?");
        free(s);
    }
}

/* 1 = the reply for id, 0 = a log line or other id (skipped), <0 = protocol error. */
static int handle_line(const char *line, size_t len, uint64_t id, struct sbx_reply *reply,
                       char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!msg || !json_is_object(msg)) {
        json_decref(msg);
        sbx_errf(err, err_len, "protocol: agent line is not a JSON object: %.60s", line);
        return NX_ERR_DECODE;
    }
    int rc = 0;
    json_t *log = json_object_get(msg, "log");
    json_t *jid = json_object_get(msg, "id");
    if (log && !jid) {
        log_line(log);
        goto out;
    }
    if (!json_is_integer(jid)) {
        sbx_errf(err, err_len, "protocol: reply without an integer id");
        rc = NX_ERR_DECODE;
        goto out;
    }
    if ((uint64_t)json_integer_value(jid) != id) {
        NX_WARN("agent_reply_other_id", "want=%" PRIu64 " got=%lld", id,
                (long long)json_integer_value(jid));
        goto out;
    }
    json_t *output = json_object_get(msg, "output");
    json_t *error = json_object_get(msg, "error");
    if ((output != NULL) == (error != NULL)) {
        sbx_errf(err, err_len, "protocol: reply needs exactly one of output and error");
        rc = NX_ERR_DECODE;
        goto out;
    }
    if (error) {
        reply->error = json_is_string(error) ? strdup(json_string_value(error))
                                             : json_dumps(error, JSON_COMPACT);
        if (!reply->error)
            reply->error = strdup("(error)");
    } else {
        reply->output = json_incref(output);
    }
    json_t *ctx = json_object_get(msg, "context");
    if (ctx && !json_is_null(ctx))
        reply->context = json_incref(ctx);
    rc = 1;
out:
    json_decref(msg);
    return rc;
}

int sbx_call(struct sbx_run *run, uint64_t id, json_t *input, json_t *context, uint64_t timeout_ms,
             struct sbx_reply *reply, char *err, size_t err_len)
{
    memset(reply, 0, sizeof *reply);
    json_t *req =
        json_pack("{s:I, s:O, s:O}", "id", (json_int_t)id, "input", input ? input : json_null(),
                  "context", context ? context : json_null());
    if (!req)
        return NX_ERR_NOMEM;
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text)
        return NX_ERR_NOMEM;
    size_t len = strlen(text);
    if (len + 1 > SBX_FRAME_MAX_BYTES) {
        free(text);
        sbx_errf(err, err_len, "protocol: request of %zu bytes exceeds the frame limit", len);
        return NX_ERR_TOO_BIG;
    }
    text[len] = '\n'; /* replaces the NUL; len + 1 bytes are sent */
    uint64_t deadline_us = timeout_ms ? nx_clock_mono_us() + timeout_ms * 1000 : 0;
    int rc = write_all(run, text, len + 1, deadline_us, err, err_len);
    free(text);
    if (rc < 0)
        return rc;

    for (;;) {
        char *nl;
        while (run->out_len > 0 && (nl = memchr(run->out, '\n', run->out_len)) != NULL) {
            size_t line_len = (size_t)(nl - run->out);
            rc = handle_line(run->out, line_len, id, reply, err, err_len);
            consume(run, line_len + 1);
            if (rc != 0)
                return rc < 0 ? rc : 0;
        }
        if (run->out_len >= SBX_FRAME_MAX_BYTES) {
            sbx_run_kill(run);
            sbx_errf(err, err_len, "protocol: agent line exceeds %u bytes", SBX_FRAME_MAX_BYTES);
            return NX_ERR_TOO_BIG;
        }
        if (run->truncated) {
            sbx_errf(err, err_len, "protocol: agent output exceeds %u bytes", SBX_OUTPUT_MAX_BYTES);
            return NX_ERR_TOO_BIG;
        }
        if (run->timed_out) {
            sbx_errf(err, err_len, "protocol: agent timed out");
            return NX_ERR_TIMEOUT;
        }
        if (run->stdout_r < 0) {
            sbx_errf(err, err_len, "protocol: agent closed stdout without replying%s%.200s",
                     run->err_tail_len ? "; stderr: " : "", run->err_tail);
            return NX_ERR_UNAVAILABLE;
        }
        uint64_t now = nx_clock_mono_us();
        if (deadline_us && now >= deadline_us) {
            sbx_errf(err, err_len, "protocol: no reply within %" PRIu64 " ms", timeout_ms);
            return NX_ERR_TIMEOUT;
        }
        int wait_ms = deadline_us ? (int)((deadline_us - now + 999) / 1000) : -1;
        if (sbx_run_pump(run, wait_ms) < 0)
            return NX_ERR_IO;
    }
}

int sbx_run_once(const struct sbx_config *cfg, json_t *input, json_t *context,
                 struct sbx_reply *reply, struct sbx_usage *usage, char *err, size_t err_len)
{
    memset(reply, 0, sizeof *reply);
    memset(usage, 0, sizeof *usage);
    struct sbx_run *run;
    int rc = sbx_run_start(cfg, &run, err, err_len);
    if (rc < 0)
        return rc;
    rc = sbx_call(run, 1, input, context, 0, reply, err, err_len);
    sbx_run_close_stdin(run);
    if (rc < 0)
        sbx_run_kill(run);
    int wrc = sbx_run_wait(run, usage);
    sbx_run_free(run);
    if (rc == 0 && wrc < 0) {
        sbx_errf(err, err_len, "wait: %s", nx_strerror(wrc));
        rc = wrc;
    }
    if (rc < 0 && usage->timed_out)
        rc = NX_ERR_TIMEOUT;
    return rc;
}

void sbx_usage_format(const struct sbx_usage *u, char *buf, size_t len)
{
    char how[64];
    if (u->term_signal)
        snprintf(how, sizeof how, "killed by signal %d", u->term_signal);
    else
        snprintf(how, sizeof how, "exit code %d", u->exit_code);
    snprintf(buf, len,
             "status:      %s%s%s%s\n"
             "wall time:   %.3f ms\n"
             "cpu time:    %.3f ms (user %.3f ms, sys %.3f ms)%s\n"
             "peak memory: %.1f KiB\n"
             "throttled:   %.3f ms in %" PRIu64 " periods\n"
             "output:      %" PRIu64 " bytes\n",
             how, u->timed_out ? ", timed out" : "", u->oom_killed ? ", OOM-killed" : "",
             u->output_truncated ? ", output limit hit" : "", (double)u->wall_us / 1000.0,
             (double)u->cpu_total_us / 1000.0, (double)u->cpu_user_us / 1000.0,
             (double)u->cpu_sys_us / 1000.0, u->from_cgroup ? " [cgroup]" : " [rusage]",
             (double)u->peak_memory_bytes / 1024.0, (double)u->throttled_us / 1000.0,
             u->nr_throttled, u->output_bytes);
}

json_t *sbx_usage_to_json(const struct sbx_usage *u)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:b, s:b, s:b, s:b}",
                     "wall_us", (json_int_t)u->wall_us, "cpu_user_us", (json_int_t)u->cpu_user_us,
                     "cpu_sys_us", (json_int_t)u->cpu_sys_us, "cpu_total_us",
                     (json_int_t)u->cpu_total_us, "peak_memory_bytes",
                     (json_int_t)u->peak_memory_bytes, "throttled_us", (json_int_t)u->throttled_us,
                     "nr_throttled", (json_int_t)u->nr_throttled, "output_bytes",
                     (json_int_t)u->output_bytes, "exit_code", u->exit_code, "term_signal",
                     u->term_signal, "oom_killed", u->oom_killed, "timed_out", u->timed_out,
                     "output_truncated", u->output_truncated, "from_cgroup", u->from_cgroup);
}
