/*
 * api.h - the node's HTTP/JSON API server (libmicrohttpd + jansson on libev).
 *
 * The server runs inside the node's libev loop (MHD's epoll fd is an ev_io),
 * so handlers run on the loop thread and may touch node state without locks.
 * A handler either replies at once or returns API_PENDING, keeps the request
 * and replies later (for example when Raft commits); the connection is
 * suspended meanwhile.
 *
 * Every route needs the operator token as "Authorization: Bearer T" unless it
 * is marked public. Errors are JSON: {"error": "message"}.
 */
#ifndef NX_NODE_API_H
#define NX_NODE_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define API_MAX_BODY_BYTES (1u << 20)
#define API_MAX_CONNECTIONS 256
#define API_CONNECTION_TIMEOUT_S 30

struct ev_loop;
struct api_server;
struct api_request;

enum api_result { API_DONE = 0, API_PENDING = 1 };

typedef enum api_result (*api_handler_fn)(void *ctx, struct api_request *req);

struct api_route {
    const char *method; /* "GET", "PUT", ... */
    const char *path;   /* exact path, or a prefix when it ends in '/' followed by '*' */
    bool is_public;     /* no token needed */
    api_handler_fn fn;
};

/*
 * Starts serving on addr ("HOST:PORT"; port 0 picks a free one). `token` and
 * `routes` are borrowed and must outlive the server. err gets a one-line
 * message on failure.
 */
int api_server_start(struct api_server **out, struct ev_loop *loop, const char *addr,
                     const char *token, const struct api_route *routes, size_t n_routes, void *ctx,
                     char *err, size_t cap) NX_MUST_USE;
uint16_t api_server_port(const struct api_server *s);
/* Replies 503 to pending requests, then stops. */
void api_server_stop(struct api_server *s);

/* ---- request accessors (valid until the reply) --------------------------- */
const char *api_req_method(const struct api_request *req);
const char *api_req_path(const struct api_request *req);
/* The part of the path after a prefix route's prefix ("" for exact routes). */
const char *api_req_tail(const struct api_request *req);
/* A query argument's value ("" for "?stale"), or NULL when absent. */
const char *api_req_query(const struct api_request *req, const char *key);
const char *api_req_body(const struct api_request *req, size_t *len);
/*
 * Parses the body as a JSON object. On failure replies 400 and returns NULL.
 * The returned object is borrowed: it is freed with the request.
 */
json_t *api_req_json(struct api_request *req);

/* ---- replies ---------------------------------------------------------- */
/* Replies with `body` (taken). Resumes a pending request. */
void api_reply_json(struct api_request *req, unsigned status, json_t *body);
void api_reply_error(struct api_request *req, unsigned status, const char *fmt, ...)
    NX_PRINTF(3, 4);
void api_reply_text(struct api_request *req, unsigned status, const char *content_type,
                    const char *text);

#endif
