/*
 * zmq_watch.c - the libev adapter for ZeroMQ sockets (see zmq_watch.h for the
 * edge-trigger rules it keeps).
 *
 * One function, pump(), is the only place that decides whether to call the
 * owner: it asks ZMQ_EVENTS (which also processes the socket's pending
 * commands, so it is the authoritative readiness test) and calls on_readable
 * while it says POLLIN, up to ZMQ_WATCH_BUDGET times. Both the ev_io on
 * ZMQ_FD and the ev_idle end up in pump(); the idle is only running while
 * there may be unread messages the fd will not announce again: after a send,
 * or when the budget ran out.
 */
#include "node/zmq_watch.h"

#include <zmq.h>

static void pump(struct zmq_watch *w)
{
    for (int i = 0; i < ZMQ_WATCH_BUDGET; i++) {
        if (w->sock == NULL)
            return; /* stopped from inside on_readable */
        int events = 0;
        size_t size = sizeof events;
        if (zmq_getsockopt(w->sock, ZMQ_EVENTS, &events, &size) != 0 || !(events & ZMQ_POLLIN)) {
            ev_idle_stop(w->loop, &w->idle);
            return;
        }
        w->on_readable(w);
    }
    if (w->sock != NULL)
        ev_idle_start(w->loop, &w->idle); /* more to read: come back without blocking */
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct zmq_watch *w = io->data;
    w->wakeups++;
    pump(w);
}

static void idle_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
    (void)loop;
    (void)revents;
    struct zmq_watch *w = idle->data;
    w->wakeups++;
    pump(w);
}

int zmq_watch_start(struct zmq_watch *w, struct ev_loop *loop, void *sock, zmq_watch_fn on_readable,
                    void *ctx)
{
    NX_ASSERT(w != NULL && loop != NULL && sock != NULL && on_readable != NULL);
    int fd = -1;
    size_t size = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &size) != 0) {
        NX_ERROR("zmq_watch_fd", "err=\"%s\"", zmq_strerror(zmq_errno()));
        return NX_ERR_IO;
    }
    w->loop = loop;
    w->sock = sock;
    w->on_readable = on_readable;
    w->ctx = ctx;
    w->wakeups = 0;
    ev_io_init(&w->io, io_cb, fd, EV_READ);
    w->io.data = w;
    ev_idle_init(&w->idle, idle_cb);
    w->idle.data = w;
    ev_io_start(loop, &w->io);
    /* Messages may already be queued (the fd edge came before we watched). */
    ev_idle_start(loop, &w->idle);
    return NX_OK;
}

void zmq_watch_stop(struct zmq_watch *w)
{
    if (w == NULL || w->sock == NULL)
        return;
    ev_io_stop(w->loop, &w->io);
    ev_idle_stop(w->loop, &w->idle);
    w->sock = NULL;
}

void zmq_watch_after_send(struct zmq_watch *w)
{
    if (w->sock != NULL)
        ev_idle_start(w->loop, &w->idle);
}

bool zmq_watch_active(const struct zmq_watch *w)
{
    return w != NULL && w->sock != NULL;
}
