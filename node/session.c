/*
 * session.c - stateful agent sessions (session.h).
 *
 * Every request is a small chain of callbacks on the loop thread:
 *   open:  check the agent is stateful -> write the record -> answer
 *   send:  read the record (linearizable) -> run once with its context ->
 *          write the new record -> answer
 *   show:  read the record -> answer
 *   close: read the record -> delete it -> answer
 * One call of a session at a time per node (another one gets 409).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_registry.h"
#include "base/base.h"
#include "sandbox/sandbox.h"
#include "session.h"

#define SESSION_KEY_MAX (sizeof SESSION_KV_PREFIX + SESSION_ID_LEN)

struct session_host {
    struct agent_host *agents;
    struct raft_host *raft;
    char busy[SESSION_MAX_BUSY][SESSION_ID_LEN + 1];
    uint64_t opened, calls, closed, failed, busy_refused;
};

enum call_kind { CALL_OPEN, CALL_SEND, CALL_SHOW, CALL_CLOSE };

struct call {
    struct session_host *s;
    struct api_request *req;
    enum call_kind kind;
    char id[SESSION_ID_LEN + 1];
    char key[SESSION_KEY_MAX];
    json_t *input;  /* owned: send */
    json_t *record; /* owned: the record read or being written */
    json_t *answer; /* owned: send: the run's answer */
    size_t busy_slot;
    bool holds_busy;
};

/* ---- helpers ---------------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' ||
              *s == '-'))
            return false;
    return true;
}

static bool id_ok(const char *id)
{
    if (strlen(id) != SESSION_ID_LEN || strncmp(id, SESSION_ID_PREFIX, 2) != 0)
        return false;
    for (const char *p = id + 2; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static struct call *call_new(struct session_host *s, struct api_request *req, enum call_kind kind,
                             const char *id)
{
    struct call *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->s = s;
    c->req = req;
    c->kind = kind;
    snprintf(c->id, sizeof c->id, "%s", id);
    snprintf(c->key, sizeof c->key, "%s%s", SESSION_KV_PREFIX, id);
    return c;
}

static void call_free(struct call *c)
{
    if (c->holds_busy)
        c->s->busy[c->busy_slot][0] = '\0';
    json_decref(c->input);
    json_decref(c->record);
    json_decref(c->answer);
    free(c);
}

/* Answers the request (body taken) and ends the call. */
static void finish(struct call *c, unsigned status, json_t *body)
{
    if (status >= 400)
        c->s->failed++;
    api_reply_json(c->req, status, body);
    call_free(c);
}

/* Passes an answer from Raft or a run on (borrowed). */
static void finish_with(struct call *c, unsigned status, json_t *answer)
{
    finish(c, status, answer ? json_incref(answer) : json_pack("{s:s}", "error", "no answer"));
}

static bool busy_take(struct call *c)
{
    size_t free_slot = SESSION_MAX_BUSY;
    for (size_t i = 0; i < SESSION_MAX_BUSY; i++) {
        if (strcmp(c->s->busy[i], c->id) == 0)
            return false;
        if (free_slot == SESSION_MAX_BUSY && c->s->busy[i][0] == '\0')
            free_slot = i;
    }
    if (free_slot == SESSION_MAX_BUSY)
        return false;
    snprintf(c->s->busy[free_slot], sizeof c->s->busy[free_slot], "%s", c->id);
    c->busy_slot = free_slot;
    c->holds_busy = true;
    return true;
}

/* Writes c->record through Raft; then done. */
static void write_record(struct call *c, raft_host_done_fn done)
{
    char *text = json_dumps(c->record, JSON_COMPACT);
    if (text == NULL) {
        finish(c, 500, json_pack("{s:s}", "error", "cannot encode the session"));
        return;
    }
    raft_host_submit_kv(c->s->raft, c->key, text, strlen(text), done, c);
    free(text);
}

/* ---- open ------------------------------------------------------------------------- */

static void on_opened(void *arg, unsigned status, json_t *answer)
{
    struct call *c = arg;
    if (status != 200) {
        finish_with(c, status, answer);
        return;
    }
    c->s->opened++;
    NX_INFO("session_opened", "session=%s agent=%s", c->id,
            json_string_value(json_object_get(c->record, "agent")));
    finish(c, 201,
           json_pack("{s:s,s:O}", "session", c->id, "agent", json_object_get(c->record, "agent")));
}

/* The agent must exist and be stateful; the session keeps the version it resolved to. */
static int resolve_stateful(struct session_host *s, const char *spec, char *pinned, size_t cap,
                            char *why, size_t why_cap)
{
    struct agent_version v;
    if (agent_registry_resolve(agent_host_registry(s->agents), spec, &v) != NX_OK) {
        snprintf(why, why_cap, "no agent %s in the registry", spec);
        return 404;
    }
    struct sbx_manifest m;
    char err[256];
    int status = 0;
    if (sbx_manifest_parse((const char *)v.manifest, v.manifest_len, &m, err, sizeof err) != 0) {
        snprintf(why, why_cap, "%s@%s: bad manifest: %s", v.rec.name, v.rec.version, err);
        status = 422;
    } else {
        if (m.kind != SBX_KIND_STATEFUL) {
            snprintf(why, why_cap, "%s@%s is %s: sessions are for stateful agents", v.rec.name,
                     v.rec.version, sbx_kind_name(m.kind));
            status = 422;
        }
        sbx_manifest_free(&m);
    }
    snprintf(pinned, cap, "%s@%s", v.rec.name, v.rec.version);
    agent_version_clear(&v);
    return status;
}

static enum api_result session_open(struct session_host *s, struct api_request *req)
{
    json_t *body = api_req_json(req);
    if (body == NULL)
        return API_DONE;
    const char *spec = json_string_value(json_object_get(body, "agent"));
    const char *account = json_string_value(json_object_get(body, "account"));
    if (spec == NULL || (account && !name_ok(account))) {
        api_reply_error(req, 400, "expected {\"agent\": \"NAME[@VERSION]\", \"account\"?: NAME}");
        return API_DONE;
    }
    char pinned[2 * 65 + 2], why[600];
    int status = resolve_stateful(s, spec, pinned, sizeof pinned, why, sizeof why);
    if (status) {
        api_reply_error(req, (unsigned)status, "%s", why);
        return API_DONE;
    }
    uint8_t rnd[8];
    char id[SESSION_ID_LEN + 1];
    randombytes_buf(rnd, sizeof rnd);
    memcpy(id, SESSION_ID_PREFIX, 2);
    nx_hex_encode(id + 2, rnd, sizeof rnd);
    struct call *c = call_new(s, req, CALL_OPEN, id);
    if (c == NULL) {
        api_reply_error(req, 503, "out of memory");
        return API_DONE;
    }
    c->record =
        json_pack("{s:s,s:o,s:n,s:i,s:s}", "agent", pinned, "account",
                  account ? json_string(account) : json_null(), "context", "calls", 0, "node", "");
    write_record(c, on_opened);
    return API_PENDING;
}

/* ---- send ------------------------------------------------------------------------- */

static void on_checkpointed(void *arg, unsigned status, json_t *answer)
{
    struct call *c = arg;
    if (status != 200) {
        /* the run happened but its context is not saved: the caller retries the same call */
        json_t *e = json_pack("{s:s,s:O,s:I}", "error",
                              "the call ran but its checkpoint was not saved; send it again "
                              "(it is charged once)",
                              "cause", answer ? answer : json_null(), "status", (json_int_t)status);
        finish(c, 503, e);
        return;
    }
    c->s->calls++;
    json_t *out = json_deep_copy(c->answer);
    json_object_del(out, "context"); /* the state stays in the record, not in the answer */
    json_object_set_new(out, "session", json_string(c->id));
    json_object_set(out, "call", json_object_get(c->record, "calls"));
    finish(c, 200, out);
}

static void on_ran(void *arg, unsigned status, json_t *answer)
{
    struct call *c = arg;
    if (status != 200) {
        finish_with(c, status, answer);
        return;
    }
    c->answer = json_incref(answer);
    json_t *ctx = json_object_get(answer, "context");
    if (ctx && json_object_get(answer, "error") == NULL)
        json_object_set(c->record, "context", ctx);
    json_int_t calls = json_integer_value(json_object_get(c->record, "calls")) + 1;
    json_object_set_new(c->record, "calls", json_integer(calls));
    json_t *node = json_object_get(answer, "node");
    json_object_set_new(c->record, "node",
                        json_is_string(node) ? json_incref(node) : json_string(""));
    write_record(c, on_checkpointed);
}

/* Parses the stored record of a read answer into c->record; false (answered) when not there. */
static bool take_record(struct call *c, unsigned status, json_t *answer)
{
    if (status == 404) {
        finish(c, 404,
               json_pack("{s:s,s:s}", "error", "no such session (closed?)", "session", c->id));
        return false;
    }
    if (status != 200) {
        finish_with(c, status, answer);
        return false;
    }
    const char *value = json_string_value(json_object_get(answer, "value"));
    c->record = value ? json_loads(value, 0, NULL) : NULL;
    if (!json_is_object(c->record) || !json_is_string(json_object_get(c->record, "agent"))) {
        finish(c, 500, json_pack("{s:s}", "error", "the session record is corrupt"));
        return false;
    }
    return true;
}

static void on_read_for_send(void *arg, unsigned status, json_t *answer)
{
    struct call *c = arg;
    if (!take_record(c, status, answer))
        return;
    char run_id[SESSION_ID_LEN + 24];
    json_int_t next = json_integer_value(json_object_get(c->record, "calls")) + 1;
    snprintf(run_id, sizeof run_id, "%s.%lld", c->id, (long long)next);
    json_t *context = json_object_get(c->record, "context");
    agent_host_session_call(c->s->agents, json_string_value(json_object_get(c->record, "agent")),
                            c->input, context ? context : json_null(),
                            json_string_value(json_object_get(c->record, "account")), run_id,
                            on_ran, c);
}

static enum api_result session_send(struct session_host *s, struct api_request *req, const char *id)
{
    json_t *body = api_req_json(req);
    if (body == NULL)
        return API_DONE;
    struct call *c = call_new(s, req, CALL_SEND, id);
    if (c == NULL) {
        api_reply_error(req, 503, "out of memory");
        return API_DONE;
    }
    if (!busy_take(c)) {
        s->busy_refused++;
        call_free(c);
        api_reply_error(req, 409, "a call of session %s is in progress here; send again after it",
                        id);
        return API_DONE;
    }
    json_t *input = json_object_get(body, "input");
    c->input = input ? json_incref(input) : json_null();
    raft_host_read_kv(s->raft, c->key, on_read_for_send, c);
    return API_PENDING;
}

/* ---- show, close ------------------------------------------------------------------- */

static void on_read_for_show(void *arg, unsigned status, json_t *answer)
{
    struct call *c = arg;
    if (!take_record(c, status, answer))
        return;
    json_t *out = json_incref(c->record);
    json_object_set_new(out, "session", json_string(c->id));
    finish(c, 200, out);
}

static void on_deleted(void *arg, unsigned status, json_t *answer)
{
    struct call *c = arg;
    if (status != 200) {
        finish_with(c, status, answer);
        return;
    }
    c->s->closed++;
    NX_INFO("session_closed", "session=%s", c->id);
    finish(c, 200,
           json_pack("{s:s,s:O}", "closed", c->id, "calls", json_object_get(c->record, "calls")));
}

static void on_read_for_close(void *arg, unsigned status, json_t *answer)
{
    struct call *c = arg;
    if (take_record(c, status, answer))
        raft_host_submit_kv(c->s->raft, c->key, NULL, 0, on_deleted, c);
}

/* ---- the API ------------------------------------------------------------------------ */

enum api_result session_host_api(void *ctx, struct api_request *req)
{
    struct session_host *s = ctx;
    const char *method = api_req_method(req), *id = api_req_tail(req);
    if (id[0] == '\0') {
        if (strcmp(method, "POST") == 0)
            return session_open(s, req);
        api_reply_error(req, 405, "POST /v1/sessions opens a session");
        return API_DONE;
    }
    if (!id_ok(id)) {
        api_reply_error(req, 404, "no such session: ids look like s-0123456789abcdef");
        return API_DONE;
    }
    if (strcmp(method, "POST") == 0)
        return session_send(s, req, id);
    enum call_kind kind = strcmp(method, "GET") == 0 ? CALL_SHOW : CALL_CLOSE;
    if (kind == CALL_CLOSE && strcmp(method, "DELETE") != 0) {
        api_reply_error(req, 405, "method %s not allowed here", method);
        return API_DONE;
    }
    struct call *c = call_new(s, req, kind, id);
    if (c == NULL) {
        api_reply_error(req, 503, "out of memory");
        return API_DONE;
    }
    raft_host_read_kv(s->raft, c->key, kind == CALL_SHOW ? on_read_for_show : on_read_for_close, c);
    return API_PENDING;
}

int session_host_start(struct session_host **out, struct agent_host *agents, struct raft_host *raft)
{
    struct session_host *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NX_ERR_NOMEM;
    s->agents = agents;
    s->raft = raft;
    *out = s;
    return NX_OK;
}

void session_host_stop(struct session_host *s)
{
    free(s);
}

json_t *session_host_counters_json(const struct session_host *s)
{
    if (s == NULL)
        return json_null();
    return json_pack("{s:I,s:I,s:I,s:I,s:I}", "opened", (json_int_t)s->opened, "calls",
                     (json_int_t)s->calls, "closed", (json_int_t)s->closed, "failed",
                     (json_int_t)s->failed, "busy_refused", (json_int_t)s->busy_refused);
}
