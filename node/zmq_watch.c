/*
 * zmq_watch.c - the libev adapter for ZeroMQ sockets (see zmq_watch.h for the
 * edge-trigger rules it keeps).
 *
 * One function, pump(), is the only place that decides whether to call the
 * owner: it calls on_readable, and again while ZMQ_EVENTS (which also
 * processes the socket's pending commands, so it is the authoritative
 * readiness test) says POLLIN, up to ZMQ_WATCH_BUDGET times. A reader that
 * read until EAGAIN says so (zmq_watch_drained) and spares that re-check.
 *
 * Three watchers feed it:
 *   ev_io on ZMQ_FD   the socket's mailbox changed;
 *   ev_check          runs after every poll, in the normal callback phase,
 *                     and pumps when `pending` is set (after a send, or when
 *                     the budget ran out). A check watcher runs every
 *                     iteration, so busy sockets or higher-priority watchers
 *                     cannot starve it the way they can starve an idle;
 *   ev_idle           active exactly while `pending` is set: it only keeps the
 *                     poll before that check from blocking. It is started by
 *                     the send itself, so a send from any phase (even from
 *                     another prepare watcher) is covered.
 * Owner callbacks never run in the prepare phase: a node that flushes its own
 * queues from an ev_prepare sees every message before the loop blocks.
 */
#include "node/zmq_watch.h"

#include <zmq.h>

static void set_pending(struct zmq_watch *w)
{
    w->pending = true;
    ev_idle_start(w->loop, &w->idle);
}

/*
 * Reads first and asks afterwards: a reader that saw EAGAIN has had libzmq
 * process the socket's commands (a ZMQ_DONTWAIT recv that finds nothing does
 * exactly what ZMQ_EVENTS does: drains the mailbox and re-arms ZMQ_FD), so
 * asking ZMQ_EVENTS before or after it would only repeat that work: two
 * system calls each time (getpid and poll inside libzmq). Only a reader that
 * stopped for its own batch bound, or does not report EAGAIN, gets the
 * ZMQ_EVENTS re-check.
 */
static void pump(struct zmq_watch *w)
{
    for (int i = 0; i < ZMQ_WATCH_BUDGET; i++) {
        if (w->sock == NULL)
            return; /* stopped from inside on_readable */
        if (i > 0) {
            int events = 0;
            size_t size = sizeof events;
            if (zmq_getsockopt(w->sock, ZMQ_EVENTS, &events, &size) != 0 || !(events & ZMQ_POLLIN))
                return;
        }
        w->drained = false;
        w->on_readable(w);
        if (w->drained)
            return; /* EAGAIN: nothing left, and ZMQ_FD signals the next message */
    }
    if (w->sock != NULL)
        set_pending(w); /* more to read: come back without blocking */
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct zmq_watch *w = io->data;
    w->wakeups++;
    pump(w);
}

static void check_cb(struct ev_loop *loop, ev_check *check, int revents)
{
    (void)revents;
    struct zmq_watch *w = check->data;
    if (!w->pending)
        return;
    w->pending = false;
    w->wakeups++;
    pump(w);
    if (!w->pending && w->sock != NULL)
        ev_idle_stop(loop, &w->idle);
}

static void idle_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
    (void)loop;
    (void)idle;
    (void)revents;
    /* Nothing to do: while active it keeps the poll from blocking; check_cb stops it. */
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
    w->pending = false;
    w->drained = false;
    ev_io_init(&w->io, io_cb, fd, EV_READ);
    w->io.data = w;
    ev_check_init(&w->check, check_cb);
    w->check.data = w;
    ev_idle_init(&w->idle, idle_cb);
    w->idle.data = w;
    ev_io_start(loop, &w->io);
    ev_check_start(loop, &w->check);
    /* Messages may already be queued (the fd edge came before we watched). */
    set_pending(w);
    return NX_OK;
}

void zmq_watch_stop(struct zmq_watch *w)
{
    if (w == NULL || w->sock == NULL)
        return;
    ev_io_stop(w->loop, &w->io);
    ev_check_stop(w->loop, &w->check);
    ev_idle_stop(w->loop, &w->idle);
    w->sock = NULL;
    w->pending = false;
}

void zmq_watch_after_send(struct zmq_watch *w)
{
    if (w->sock != NULL)
        set_pending(w);
}

void zmq_watch_drained(struct zmq_watch *w)
{
    w->drained = true;
}

bool zmq_watch_active(const struct zmq_watch *w)
{
    return w != NULL && w->sock != NULL;
}
