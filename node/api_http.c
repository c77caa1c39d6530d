/*
 * api_http.c - HTTP server adapter: libmicrohttpd driven by the libev loop.
 *
 * Why libmicrohttpd: a mature, small, Debian-packaged HTTP/1.1 server library
 * that can run without threads of its own: we hand its epoll fd to libev and
 * call MHD_run when it is ready, so handlers run on the loop thread. It
 * supports suspending a connection while an answer is pending (Raft commit,
 * a remote agent run), which is what a consensus-backed API needs.
 *
 * Request life cycle with MHD's access handler:
 *   1st call: allocate our request; 2nd..n calls: body chunks (bounded);
 *   last call (upload size 0): route, authorize, run the handler. A handler
 *   that returns API_PENDING leaves the connection suspended until it calls
 *   api_reply_*, which resumes it; MHD then calls us once more and we queue
 *   the stored response.
 */
#include "api.h"
#include "node.h"

#include <arpa/inet.h>
#include <ev.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PENDING_MAX 1024

struct api_request {
    struct api_server *server;
    struct MHD_Connection *conn;
    char *method;
    char *path;
    const char *tail;
    char *body;
    size_t body_len;
    bool too_big;
    bool dispatched;
    bool suspended;
    json_t *json;
    struct MHD_Response *response; /* set by api_reply_*, queued by the handler */
    unsigned status;
    struct api_request *next_pending, *prev_pending;
};

struct api_server {
    struct ev_loop *loop;
    struct MHD_Daemon *daemon;
    ev_io io;
    ev_timer timer;
    const char *token;
    const struct api_route *routes;
    size_t n_routes;
    void *ctx;
    uint16_t port;
    struct api_request *pending; /* suspended requests, so stop can answer them */
    size_t n_pending;
};

static void rearm(struct api_server *s)
{
    MHD_UNSIGNED_LONG_LONG timeout_ms;
    ev_timer_stop(s->loop, &s->timer);
    if (MHD_get_timeout(s->daemon, &timeout_ms) == MHD_YES) {
        ev_timer_set(&s->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(s->loop, &s->timer);
    }
}

static void run_mhd(struct api_server *s)
{
    MHD_run(s->daemon);
    rearm(s);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    run_mhd(w->data);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run_mhd(w->data);
}

static void pending_link(struct api_server *s, struct api_request *r)
{
    r->prev_pending = NULL;
    r->next_pending = s->pending;
    if (s->pending)
        s->pending->prev_pending = r;
    s->pending = r;
    s->n_pending++;
}

static void pending_unlink(struct api_server *s, struct api_request *r)
{
    if (r->prev_pending)
        r->prev_pending->next_pending = r->next_pending;
    else
        s->pending = r->next_pending;
    if (r->next_pending)
        r->next_pending->prev_pending = r->prev_pending;
    s->n_pending--;
}

static void set_response(struct api_request *req, unsigned status, const char *ctype, char *text,
                         size_t len)
{
    if (req->response) { /* a handler replied twice: keep the first */
        free(text);
        return;
    }
    req->response = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (req->response == NULL) {
        free(text);
        return;
    }
    MHD_add_response_header(req->response, "Content-Type", ctype);
    req->status = status;
    if (req->suspended) {
        req->suspended = false;
        pending_unlink(req->server, req);
        MHD_resume_connection(req->conn);
        ev_timer_stop(req->server->loop, &req->server->timer);
        ev_timer_set(&req->server->timer, 0., 0.);
        ev_timer_start(req->server->loop, &req->server->timer);
    }
}

void api_reply_text(struct api_request *req, unsigned status, const char *content_type,
                    const char *text)
{
    char *copy = strdup(text);
    if (copy)
        set_response(req, status, content_type, copy, strlen(copy));
}

void api_reply_json(struct api_request *req, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        text = strdup("{\"error\":\"cannot encode the reply\"}");
        status = 500;
        if (text == NULL)
            return;
    }
    size_t len = strlen(text);
    char *with_newline = realloc(text, len + 2);
    if (with_newline) {
        with_newline[len++] = '\n';
        with_newline[len] = '\0';
        text = with_newline;
    }
    set_response(req, status, "application/json", text, len);
}

void api_reply_error(struct api_request *req, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_reply_json(req, status, json_pack("{s:s}", "error", msg));
}

const char *api_req_method(const struct api_request *req)
{
    return req->method;
}
const char *api_req_path(const struct api_request *req)
{
    return req->path;
}
const char *api_req_tail(const struct api_request *req)
{
    return req->tail;
}

const char *api_req_query(const struct api_request *req, const char *key)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
    if (v)
        return v;
    /* "?stale" with no '=' is reported by MHD as a key with a NULL value. */
    return MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key), NULL,
                                         NULL) == MHD_YES
               ? ""
               : NULL;
}

const char *api_req_body(const struct api_request *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

json_t *api_req_json(struct api_request *req)
{
    if (req->json)
        return req->json;
    json_error_t jerr;
    req->json = json_loadb(req->body ? req->body : "", req->body_len, 0, &jerr);
    if (req->json == NULL) {
        api_reply_error(req, 400, "request body is not valid JSON: %s (line %d)", jerr.text,
                        jerr.line);
        return NULL;
    }
    if (!json_is_object(req->json)) {
        api_reply_error(req, 400, "request body must be a JSON object");
        return NULL;
    }
    return req->json;
}

static bool route_matches(const struct api_route *r, const char *method, const char *path,
                          const char **tail)
{
    if (strcmp(r->method, method) != 0)
        return false;
    size_t n = strlen(r->path);
    if (n > 0 && r->path[n - 1] == '*') {
        if (strncmp(r->path, path, n - 1) != 0 || path[n - 1] == '\0')
            return false;
        *tail = path + n - 1;
        return true;
    }
    *tail = "";
    return strcmp(r->path, path) == 0;
}

static bool authorized(struct api_request *req)
{
    const char *auth =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *prefix = "Bearer ";
    if (auth == NULL || strncmp(auth, prefix, strlen(prefix)) != 0)
        return false;
    return node_secret_equal(auth + strlen(prefix), req->server->token);
}

static void dispatch(struct api_request *req)
{
    struct api_server *s = req->server;
    if (req->too_big) {
        api_reply_error(req, 413, "request body larger than %u bytes", API_MAX_BODY_BYTES);
        return;
    }
    bool path_known = false;
    for (size_t i = 0; i < s->n_routes; i++) {
        const struct api_route *r = &s->routes[i];
        const char *tail;
        if (!route_matches(r, req->method, req->path, &tail)) {
            const char *ignored;
            if (!path_known) {
                struct api_route any = *r;
                any.method = req->method;
                path_known = route_matches(&any, req->method, req->path, &ignored);
            }
            continue;
        }
        if (!r->is_public && !authorized(req)) {
            api_reply_error(req, 401, "missing or wrong bearer token");
            return;
        }
        req->tail = tail;
        if (r->fn(s->ctx, req) == API_PENDING && req->response == NULL) {
            if (s->n_pending >= PENDING_MAX) {
                api_reply_error(req, 503, "too many requests in flight");
                return;
            }
            req->suspended = true;
            pending_link(s, req);
            MHD_suspend_connection(req->conn);
        } else if (req->response == NULL) {
            api_reply_error(req, 500, "handler gave no reply");
        }
        return;
    }
    if (path_known)
        api_reply_error(req, 405, "method %s not allowed on %s", req->method, req->path);
    else
        api_reply_error(req, 404, "no such endpoint: %s %s", req->method, req->path);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct api_server *s = cls;
    struct api_request *req = *con_cls;
    if (req == NULL) {
        req = calloc(1, sizeof *req);
        if (req == NULL)
            return MHD_NO;
        req->server = s;
        req->conn = conn;
        req->method = strdup(method);
        req->path = strdup(url);
        *con_cls = req;
        return (req->method && req->path) ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_big || req->body_len + n > API_MAX_BODY_BYTES) {
            req->too_big = true;
            return MHD_YES;
        }
        char *grown = realloc(req->body, req->body_len + n + 1);
        if (grown == NULL)
            return MHD_NO;
        memcpy(grown + req->body_len, upload_data, n);
        req->body = grown;
        req->body_len += n;
        req->body[req->body_len] = '\0';
        return MHD_YES;
    }
    if (!req->dispatched) {
        req->dispatched = true;
        dispatch(req);
    }
    if (req->response == NULL)
        return MHD_YES; /* suspended; resumed by api_reply_* */
    enum MHD_Result rc = MHD_queue_response(conn, req->status, req->response);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct api_request *req = *con_cls;
    if (req == NULL)
        return;
    if (req->response)
        MHD_destroy_response(req->response);
    json_decref(req->json);
    free(req->method);
    free(req->path);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

static int parse_bind(const char *addr, struct sockaddr_in *sa, char *err, size_t cap)
{
    char host[NODE_ADDR_MAX];
    uint16_t port;
    if (node_addr_split(addr, host, sizeof host, &port) != NX_OK) {
        snprintf(err, cap, "bad API address '%s' (expected HOST:PORT)", addr);
        return NX_ERR_INVAL;
    }
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        snprintf(err, cap, "bad API address '%s' (expected an IPv4 address and a port)", addr);
        return NX_ERR_INVAL;
    }
    return NX_OK;
}

int api_server_start(struct api_server **out, struct ev_loop *loop, const char *addr,
                     const char *token, const struct api_route *routes, size_t n_routes, void *ctx,
                     char *err, size_t cap)
{
    struct sockaddr_in sa;
    int rc = parse_bind(addr, &sa, err, cap);
    if (rc != NX_OK)
        return rc;
    struct api_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NX_ERR_NOMEM;
    s->loop = loop;
    s->token = token;
    s->routes = routes;
    s->n_routes = n_routes;
    s->ctx = ctx;
    s->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)API_CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    if (s->daemon == NULL) {
        snprintf(err, cap, "cannot serve the HTTP API on %s (address in use or not local?)", addr);
        free(s);
        return NX_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pinfo = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = pinfo ? pinfo->port : ntohs(sa.sin_port);
    ev_io_init(&s->io, on_io, info->epoll_fd, EV_READ);
    s->io.data = s;
    ev_init(&s->timer, on_timer);
    s->timer.data = s;
    ev_io_start(loop, &s->io);
    rearm(s);
    *out = s;
    return NX_OK;
}

uint16_t api_server_port(const struct api_server *s)
{
    return s->port;
}

void api_server_stop(struct api_server *s)
{
    if (s == NULL)
        return;
    while (s->pending)
        api_reply_error(s->pending, 503, "node is shutting down");
    MHD_run(s->daemon);
    ev_io_stop(s->loop, &s->io);
    ev_timer_stop(s->loop, &s->timer);
    MHD_stop_daemon(s->daemon);
    free(s);
}
