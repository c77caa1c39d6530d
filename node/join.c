/*
 * join.c - join by token: the token text, the joiner's handshake and the
 * member's answer (join.h, docs/join.md).
 *
 * Bodies (little-endian):
 *   JOIN_REQUEST:  version u8 (1) | address length u8 | address | admit command
 *   JOIN_RESPONSE: version u8 (1) | outcome u8 | reason u16 | text length u16 | text
 *                  outcome ADMITTED only: operator key 32 | count u8 |
 *                  count x (node key 32 | address length u8 | address)
 */
#include <errno.h>
#include <ev.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "join.h"
#include "proto/ncap.h"
#include "transport.h"

#define JOIN_VERSION 1
#define JOIN_TEXT_MAX 200

enum join_outcome { JOIN_ADMITTED = 0, JOIN_REFUSED = 1, JOIN_TRY_AGAIN = 2 };

/* ---- the token ------------------------------------------------------------ */

int join_token_format(const char *ledger_string, const uint8_t member[NODE_PK_BYTES],
                      char out[JOIN_TOKEN_MAX])
{
    char hex[NODE_ID_HEX_LEN + 1];
    nx_hex_encode(hex, member, NODE_PK_BYTES);
    int n = snprintf(out, JOIN_TOKEN_MAX, "%s.%s", ledger_string, hex);
    return n > 0 && n < JOIN_TOKEN_MAX ? NX_OK : NX_ERR_INVAL;
}

int join_token_parse(const char *text, struct join_token *out, char *err, size_t cap)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(text);
    const char *dot = strrchr(text, '.');
    char secret[LEDGER_STR_CAP];
    if (len >= JOIN_TOKEN_MAX || dot == NULL || strlen(dot + 1) != NODE_ID_HEX_LEN ||
        nx_hex_decode(out->member, NODE_PK_BYTES, dot + 1) != NX_OK ||
        (size_t)(dot - text) >= sizeof out->ledger_string) {
        snprintf(err, cap,
                 "not a join token (expected nxj1.<cluster>.<pin>.<id>.<secret>.<member>; "
                 "create one with 'nexus token create')");
        return NX_ERR_INVAL;
    }
    memcpy(out->ledger_string, text, (size_t)(dot - text));
    out->ledger_string[dot - text] = '\0';
    int rc = ledger_join_string_parse(out->ledger_string, out->cluster_id, out->operator_pin,
                                      out->id, secret);
    sodium_memzero(secret, sizeof secret);
    if (rc != NX_OK) {
        snprintf(err, cap, "not a join token: its cluster, pin, id or secret is malformed");
        return NX_ERR_INVAL;
    }
    return NX_OK;
}

int join_seed_read(const char *data_dir, char **out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, JOIN_SEED_FILE);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT ? NX_ERR_NOT_FOUND : NX_ERR_IO;
    char *buf = calloc(1, 64 * 1024);
    size_t n = buf ? fread(buf, 1, 64 * 1024 - 1, f) : 0;
    fclose(f);
    if (buf == NULL)
        return NX_ERR_NOMEM;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    *out = buf;
    return NX_OK;
}

/* ---- little-endian helpers ------------------------------------------------ */

static void put_u16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static unsigned get_u16(const uint8_t *p)
{
    return (unsigned)p[0] | ((unsigned)p[1] << 8);
}

/* ---- the member's side ----------------------------------------------------- */

struct join_pending {
    struct join_server *s;
    bool used;
    uint8_t joiner[NODE_PK_BYTES];
    char route[NODE_TRANSPORT_GUEST_ROUTE_MAX];
};

struct join_server {
    struct mesh *mesh;
    struct raft_host *raft;
    struct gossip_host *gossip;
    const struct node_identity *id;
    const char *advertise;
    struct join_pending pending[JOIN_MAX_PENDING];
    uint64_t requests, admitted, malformed, busy;
    uint64_t refused[LEDGER_REJ__COUNT];
};

/* Appends one member entry; false when the buffer is full. */
static bool put_member(uint8_t *buf, size_t cap, size_t *len, const uint8_t pk[NODE_PK_BYTES],
                       const char *addr)
{
    size_t alen = strlen(addr);
    if (alen > 255 || *len + NODE_PK_BYTES + 1 + alen > cap)
        return false;
    memcpy(buf + *len, pk, NODE_PK_BYTES);
    buf[*len + NODE_PK_BYTES] = (uint8_t)alen;
    memcpy(buf + *len + NODE_PK_BYTES + 1, addr, alen);
    *len += NODE_PK_BYTES + 1 + alen;
    return true;
}

/* Operator key, then ourselves and every alive registry member gossip knows an address for. */
static size_t put_admitted_tail(struct join_server *s, uint8_t *buf, size_t cap, size_t len)
{
    struct ledger *l = raft_host_ledger(s->raft);
    uint8_t cid[LEDGER_CLUSTER_ID_BYTES], opk[LEDGER_KEY_BYTES];
    if (ledger_genesis_get(l, cid, opk) != NX_OK)
        memset(opk, 0, sizeof opk);
    memcpy(buf + len, opk, LEDGER_KEY_BYTES);
    size_t count_at = len + LEDGER_KEY_BYTES, n = 0;
    len = count_at + 1;
    if (put_member(buf, cap, &len, s->id->pk, s->advertise))
        n++;
    json_t *members = gossip_host_members_json(s->gossip);
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        const char *hex = json_string_value(json_object_get(m, "id"));
        const char *addr = json_string_value(json_object_get(m, "address"));
        const char *state = json_string_value(json_object_get(m, "state"));
        uint8_t pk[NODE_PK_BYTES];
        if (n == JOIN_MAX_LISTED_MEMBERS || hex == NULL || addr == NULL || state == NULL ||
            strcmp(state, "alive") != 0 || strlen(hex) != NODE_ID_HEX_LEN ||
            nx_hex_decode(pk, sizeof pk, hex) != NX_OK ||
            memcmp(pk, s->id->pk, NODE_PK_BYTES) == 0 || !ledger_node_is_member(l, pk))
            continue;
        if (put_member(buf, cap, &len, pk, addr))
            n++;
    }
    json_decref(members);
    buf[count_at] = (uint8_t)n;
    return len;
}

static void respond(struct join_server *s, const char *route, const uint8_t joiner[NODE_PK_BYTES],
                    enum join_outcome outcome, unsigned reason, const char *text)
{
    uint8_t buf[8 + JOIN_TEXT_MAX + LEDGER_KEY_BYTES + 1 +
                JOIN_MAX_LISTED_MEMBERS * (NODE_PK_BYTES + 1 + NODE_ADDR_MAX)];
    size_t tl = strnlen(text, JOIN_TEXT_MAX), len = 6 + tl;
    buf[0] = JOIN_VERSION;
    buf[1] = (uint8_t)outcome;
    put_u16(buf + 2, reason);
    put_u16(buf + 4, (unsigned)tl);
    memcpy(buf + 6, text, tl);
    if (outcome == JOIN_ADMITTED)
        len = put_admitted_tail(s, buf, sizeof buf, len);
    if (mesh_reply_guest(s->mesh, route, joiner, NCAP_MSG_JOIN_RESPONSE, buf, len) != NX_OK)
        NX_WARN("join_answer_lost", "node=%.16s", "(guest gone)");
}

static void log_refusal(struct join_server *s, const uint8_t joiner[NODE_PK_BYTES], int reason)
{
    char hex[NODE_ID_HEX_LEN + 1];
    nx_hex_encode(hex, joiner, NODE_PK_BYTES);
    if (reason > 0 && reason < LEDGER_REJ__COUNT)
        s->refused[reason]++;
    NX_WARN("join_refused", "node=%.16s reason=\"%s\"", hex, ledger_reason_str(reason));
}

/* raft_host_submit_ledger's answer to a joiner's admit command. */
static void on_admit_done(void *arg, unsigned status, json_t *answer)
{
    struct join_pending *p = arg;
    struct join_server *s = p->s;
    json_t *rc = json_object_get(answer, "reason_code");
    int reason = json_is_integer(rc) ? (int)json_integer_value(rc) : -1;
    char hex[NODE_ID_HEX_LEN + 1];
    nx_hex_encode(hex, p->joiner, NODE_PK_BYTES);
    if (status == 200 || (status == 422 && reason == LEDGER_REJ_NODE_EXISTS)) {
        s->admitted++;
        NX_INFO("join_admitted", "node=%.16s", hex);
        respond(s, p->route, p->joiner, JOIN_ADMITTED, 0, "admitted");
    } else if (status == 422 && reason > 0) {
        log_refusal(s, p->joiner, reason);
        respond(s, p->route, p->joiner, JOIN_REFUSED, (unsigned)reason, ledger_reason_str(reason));
    } else {
        const char *e = json_string_value(json_object_get(answer, "error"));
        NX_INFO("join_deferred", "node=%.16s status=%u error=\"%s\"", hex, status, e ? e : "");
        respond(s, p->route, p->joiner, JOIN_TRY_AGAIN, 0, e ? e : "the cluster cannot decide now");
    }
    p->used = false;
}

static struct join_pending *pending_for(struct join_server *s, const uint8_t joiner[NODE_PK_BYTES],
                                        bool *in_flight)
{
    struct join_pending *free_slot = NULL;
    *in_flight = false;
    for (size_t i = 0; i < JOIN_MAX_PENDING; i++) {
        struct join_pending *p = &s->pending[i];
        if (p->used && memcmp(p->joiner, joiner, NODE_PK_BYTES) == 0) {
            *in_flight = true;
            return p;
        }
        if (!p->used && free_slot == NULL)
            free_slot = p;
    }
    return free_slot;
}

/* The admit command a request carries, checked to be the sender admitting itself. */
static bool request_parse(const uint8_t sender[NODE_PK_BYTES], const uint8_t *body, size_t len,
                          const uint8_t **cmd, size_t *cmd_len)
{
    if (len < 2 || body[0] != JOIN_VERSION || len < 2u + body[1])
        return false;
    *cmd = body + 2 + body[1];
    *cmd_len = len - 2 - body[1];
    struct ledger_cmd c;
    return *cmd_len + LEDGER_ENTRY_HEADER_BYTES <= LEDGER_MAX_ENTRY_BYTES &&
           ledger_cmd_decode(*cmd, *cmd_len, &c) == NX_OK && c.type == LEDGER_CMD_NODE_ADMIT &&
           c.u.admit.token_id[0] != '\0' && memcmp(c.author, sender, NODE_PK_BYTES) == 0 &&
           memcmp(c.u.admit.node, sender, NODE_PK_BYTES) == 0;
}

static void on_join_request(void *ctx, const uint8_t sender[NODE_PK_BYTES], const char *route,
                            const uint8_t *body, size_t len)
{
    struct join_server *s = ctx;
    const uint8_t *cmd;
    size_t cmd_len;
    s->requests++;
    if (!request_parse(sender, body, len, &cmd, &cmd_len)) {
        s->malformed++;
        log_refusal(s, sender, LEDGER_REJ_MALFORMED);
        respond(s, route, sender, JOIN_REFUSED, LEDGER_REJ_MALFORMED, "malformed join request");
        return;
    }
    if (ledger_node_is_member(raft_host_ledger(s->raft), sender)) {
        s->admitted++; /* asked again after a lost answer */
        respond(s, route, sender, JOIN_ADMITTED, 0, "already a member");
        return;
    }
    bool in_flight;
    struct join_pending *p = pending_for(s, sender, &in_flight);
    if (p == NULL) {
        s->busy++;
        respond(s, route, sender, JOIN_TRY_AGAIN, 0, "busy with other joins");
        return;
    }
    snprintf(p->route, sizeof p->route, "%s", route); /* answer on the newest connection */
    if (in_flight)
        return;
    p->used = true;
    p->s = s;
    memcpy(p->joiner, sender, NODE_PK_BYTES);
    raft_host_submit_ledger(s->raft, cmd, cmd_len, on_admit_done, p);
}

int join_serve(struct join_server **out, struct mesh *mesh, struct raft_host *raft,
               struct gossip_host *gossip, const struct node_identity *id, const char *advertise)
{
    struct join_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NX_ERR_NOMEM;
    s->mesh = mesh;
    s->raft = raft;
    s->gossip = gossip;
    s->id = id;
    s->advertise = advertise;
    mesh_set_guest_handler(mesh, on_join_request, s);
    *out = s;
    return NX_OK;
}

void join_serve_stop(struct join_server *s)
{
    if (s == NULL)
        return;
    mesh_set_guest_handler(s->mesh, NULL, NULL);
    free(s);
}

json_t *join_serve_counters_json(const struct join_server *s)
{
    if (s == NULL)
        return json_null();
    json_t *refused = json_object();
    for (int r = 1; r < LEDGER_REJ__COUNT; r++)
        if (s->refused[r])
            json_object_set_new(refused, ledger_reason_str(r),
                                json_integer((json_int_t)s->refused[r]));
    return json_pack("{s:I,s:I,s:o,s:I,s:I}", "requests", (json_int_t)s->requests, "admitted",
                     (json_int_t)s->admitted, "refused", refused, "malformed",
                     (json_int_t)s->malformed, "busy", (json_int_t)s->busy);
}

/* ---- the joiner's side ------------------------------------------------------ */

struct join_client {
    struct ev_loop *loop;
    struct mesh *mesh;
    const struct join_token *token;
    const char *member_addr;
    const char *data_dir;
    uint8_t *request;
    size_t request_len;
    ev_timer resend, deadline;
    bool done;
    int rc;
    char *seeds;
    char *err;
    size_t cap;
    uint64_t tries;
    uint32_t timeout_ms;
};

static void client_finish(struct join_client *c, int rc)
{
    c->done = true;
    c->rc = rc;
    ev_timer_stop(c->loop, &c->resend);
    ev_timer_stop(c->loop, &c->deadline);
    ev_break(c->loop, EVBREAK_ONE);
}

static void send_request(struct join_client *c)
{
    c->tries++;
    if (mesh_send(c->mesh, c->token->member, c->member_addr, NCAP_MSG_JOIN_REQUEST, c->request,
                  c->request_len) != NX_OK)
        NX_DEBUG("join_send_failed", "try=%llu", (unsigned long long)c->tries);
}

static void on_resend(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    send_request(w->data);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct join_client *c = w->data;
    snprintf(c->err, c->cap,
             "join: no answer from %s in %.1f s: is it running, is it the node address "
             "(--bind, not the API) of the member that made the token, and is the token of "
             "its cluster?",
             c->member_addr, c->timeout_ms / 1000.0);
    client_finish(c, NX_ERR_TIMEOUT);
}

/* Trusts and records the members an admission lists; builds the seeds text. */
static int take_members(struct join_client *c, const uint8_t *p, size_t len)
{
    if (len < LEDGER_KEY_BYTES + 1)
        return NX_ERR_DECODE;
    uint8_t pin[LEDGER_HASH_BYTES];
    ledger_operator_pin(p, pin);
    if (sodium_memcmp(pin, c->token->operator_pin, sizeof pin) != 0) {
        snprintf(c->err, c->cap,
                 "join: the member's cluster has another operator than the token names");
        return NX_ERR_PERM;
    }
    size_t n = p[LEDGER_KEY_BYTES], off = LEDGER_KEY_BYTES + 1;
    char *seeds = calloc(1, n * (NODE_ID_HEX_LEN + 2 + 256) + 1);
    if (seeds == NULL)
        return NX_ERR_NOMEM;
    size_t sl = 0;
    for (size_t i = 0; i < n; i++) {
        if (off + NODE_PK_BYTES + 1 > len || off + NODE_PK_BYTES + 1 + p[off + NODE_PK_BYTES] > len)
            goto bad;
        const uint8_t *pk = p + off;
        size_t alen = p[off + NODE_PK_BYTES];
        char addr[256], hex[NODE_ID_HEX_LEN + 1], host[NODE_ADDR_MAX];
        uint16_t port;
        memcpy(addr, p + off + NODE_PK_BYTES + 1, alen);
        addr[alen] = '\0';
        off += NODE_PK_BYTES + 1 + alen;
        if (node_addr_split(addr, host, sizeof host, &port) != NX_OK || port == 0 ||
            mesh_trust_add(c->mesh, pk) != NX_OK)
            goto bad;
        nx_hex_encode(hex, pk, NODE_PK_BYTES);
        sl += (size_t)sprintf(seeds + sl, "%s%s@%s", sl ? "\n" : "", hex, addr);
    }
    if (off != len)
        goto bad;
    char werr[256];
    if (node_file_write_atomic(c->data_dir, JOIN_SEED_FILE, seeds, werr, sizeof werr) != NX_OK) {
        snprintf(c->err, c->cap, "join: admitted, but %s", werr);
        free(seeds);
        return NX_ERR_IO;
    }
    c->seeds = seeds;
    return NX_OK;
bad:
    free(seeds);
    snprintf(c->err, c->cap, "join: malformed member list in the answer");
    return NX_ERR_DECODE;
}

static void on_join_response(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                             size_t len)
{
    struct join_client *c = ctx;
    if (c->done || memcmp(sender, c->token->member, NODE_PK_BYTES) != 0)
        return; /* not the member the token pins */
    if (len < 6 || body[0] != JOIN_VERSION || len < 6u + get_u16(body + 4))
        return;
    unsigned reason = get_u16(body + 2), tl = get_u16(body + 4);
    char text[JOIN_TEXT_MAX + 1];
    snprintf(text, sizeof text, "%.*s", (int)(tl > JOIN_TEXT_MAX ? JOIN_TEXT_MAX : tl),
             (const char *)body + 6);
    switch (body[1]) {
    case JOIN_ADMITTED:
        client_finish(c, take_members(c, body + 6 + tl, len - 6 - tl));
        break;
    case JOIN_REFUSED:
        snprintf(c->err, c->cap, "join refused by %s: %s", c->member_addr,
                 reason ? ledger_reason_str((int)reason) : text);
        client_finish(c, NX_ERR_PERM);
        break;
    default: /* try again: the resend timer does */
        NX_INFO("join_wait", "member=%s says=\"%s\"", c->member_addr, text);
        break;
    }
}

/* The request body: our address and our admit command (built once: resends are idempotent). */
static int build_request(struct join_client *c, const struct node_identity *id,
                         const char *advertise)
{
    uint8_t nonce[LEDGER_NONCE_BYTES], *cmd = NULL;
    size_t cmd_len = 0, alen = strlen(advertise);
    randombytes_buf(nonce, sizeof nonce);
    if (alen > 255)
        return NX_ERR_INVAL;
    int rc = ledger_cmd_build_admit(c->token->ledger_string, id->sk, nonce, nx_clock_wall_ms(),
                                    &cmd, &cmd_len);
    if (rc != NX_OK)
        return rc;
    c->request = malloc(2 + alen + cmd_len);
    if (c->request == NULL) {
        free(cmd);
        return NX_ERR_NOMEM;
    }
    c->request[0] = JOIN_VERSION;
    c->request[1] = (uint8_t)alen;
    memcpy(c->request + 2, advertise, alen);
    memcpy(c->request + 2 + alen, cmd, cmd_len);
    c->request_len = 2 + alen + cmd_len;
    free(cmd);
    return NX_OK;
}

int join_run(struct ev_loop *loop, struct mesh *mesh, const struct node_identity *id,
             const struct join_token *token, const char *member_addr, const char *advertise,
             const char *data_dir, uint32_t timeout_ms, char **seeds, char *err, size_t cap)
{
    struct join_client c = {.loop = loop,
                            .mesh = mesh,
                            .token = token,
                            .member_addr = member_addr,
                            .data_dir = data_dir,
                            .err = err,
                            .cap = cap};
    *seeds = NULL;
    err[0] = '\0';
    int rc = mesh_trust_add(mesh, token->member);
    if (rc == NX_OK)
        rc = build_request(&c, id, advertise);
    if (rc == NX_OK)
        rc = mesh_set_handler(mesh, NCAP_MSG_JOIN_RESPONSE, on_join_response, &c);
    if (rc != NX_OK) {
        snprintf(err, cap, "join: cannot start: %s", nx_strerror(rc));
        free(c.request);
        return rc;
    }
    ev_timer_init(&c.resend, on_resend, JOIN_RESEND_MS / 1000.0, JOIN_RESEND_MS / 1000.0);
    ev_timer_init(&c.deadline, on_deadline, timeout_ms / 1000.0, 0.);
    c.timeout_ms = timeout_ms;
    c.resend.data = c.deadline.data = &c;
    ev_timer_start(loop, &c.resend);
    ev_timer_start(loop, &c.deadline);
    NX_INFO("join_start", "member=%s token=%s", member_addr, token->id);
    send_request(&c);
    while (!c.done)
        ev_run(loop, 0);
    mesh_clear_handler(mesh, NCAP_MSG_JOIN_RESPONSE);
    free(c.request);
    if (c.rc == NX_OK) {
        *seeds = c.seeds;
        NX_INFO("join_done", "member=%s tries=%llu", member_addr, (unsigned long long)c.tries);
    }
    return c.rc;
}
