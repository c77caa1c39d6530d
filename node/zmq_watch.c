/*
 * zmq_watch.c - the libev adapter for ZeroMQ sockets (see zmq_watch.h for the
 * edge-trigger rules it keeps).
 *
 * One function, pump(), is the only place that decides whether to call the
 * owner: it asks ZMQ_EVENTS (which also processes the socket's pending
 * commands, so it is the authoritative readiness test) and calls on_readable
 * while it says POLLIN, up to ZMQ_WATCH_BUDGET times.
 *
 * Three watchers feed it:
 *   ev_io on ZMQ_FD   the socket's mailbox changed;
 *   ev_prepare        runs before every poll of the loop and pumps when
 *                     `recheck` is set (after a send, or when the budget ran
 *                     out). A prepare watcher cannot be starved by busy
 *                     sockets or higher-priority watchers, unlike an idle;
 *   ev_idle           a token that only keeps the next poll from blocking, so
 *                     the prepare runs again at once. It is needed when a send
 *                     happens inside another watch's prepare callback, after
 *                     this watch's prepare already ran in the same iteration.
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
        if (zmq_getsockopt(w->sock, ZMQ_EVENTS, &events, &size) != 0 || !(events & ZMQ_POLLIN))
            return;
        w->on_readable(w);
    }
    if (w->sock != NULL) { /* more to read: come back without blocking */
        w->recheck = true;
        ev_idle_start(w->loop, &w->idle);
    }
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct zmq_watch *w = io->data;
    w->wakeups++;
    pump(w);
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *prepare, int revents)
{
    (void)loop;
    (void)revents;
    struct zmq_watch *w = prepare->data;
    if (!w->recheck)
        return;
    w->recheck = false;
    w->wakeups++;
    pump(w);
}

static void idle_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
    (void)revents;
    ev_idle_stop(loop, idle); /* its only job was to keep the last poll from blocking */
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
    ev_prepare_init(&w->prepare, prepare_cb);
    w->prepare.data = w;
    ev_idle_init(&w->idle, idle_cb);
    w->idle.data = w;
    ev_io_start(loop, &w->io);
    ev_prepare_start(loop, &w->prepare);
    /* Messages may already be queued (the fd edge came before we watched). */
    zmq_watch_after_send(w);
    return NX_OK;
}

void zmq_watch_stop(struct zmq_watch *w)
{
    if (w == NULL || w->sock == NULL)
        return;
    ev_io_stop(w->loop, &w->io);
    ev_prepare_stop(w->loop, &w->prepare);
    ev_idle_stop(w->loop, &w->idle);
    w->sock = NULL;
    w->recheck = false;
}

void zmq_watch_after_send(struct zmq_watch *w)
{
    if (w->sock != NULL) {
        w->recheck = true;
        ev_idle_start(w->loop, &w->idle);
    }
}

bool zmq_watch_active(const struct zmq_watch *w)
{
    return w != NULL && w->sock != NULL;
}
