/*
 * zmq_watch.h - wires one ZeroMQ socket into a libev loop, correctly.
 *
 * Owns: an ev_io on the socket's ZMQ_FD, an ev_check that re-checks
 * ZMQ_EVENTS after the loop polls, and an ev_idle that keeps that poll from
 * blocking while a re-check is due. Never touches: the messages; the owner's
 * callback reads them.
 *
 * Why this exists: ZMQ_FD is not a level-triggered "data ready" descriptor.
 * It signals that the socket's internal command mailbox changed; ZeroMQ may
 * consume that signal inside any zmq_send, zmq_recv or zmq_getsockopt call.
 * So (1) after the fd fires, the owner must read with ZMQ_DONTWAIT until
 * EAGAIN (or a batch bound) and the watch re-checks ZMQ_EVENTS; (2) after any
 * send on the socket the watch must re-check ZMQ_EVENTS too, because the send
 * may have eaten the edge of a message that is already waiting. Forgetting
 * either leaves messages unread until some unrelated traffic arrives.
 *
 * The rules the watch keeps:
 *   - on_readable(w) is called when the fd fired or a re-check is due (so
 *     possibly with nothing to read); it reads up to a batch of messages with
 *     ZMQ_DONTWAIT and returns. When a read failed with EAGAIN it calls
 *     zmq_watch_drained(w): that recv processed the socket's commands just
 *     as ZMQ_EVENTS would, so the socket is done until ZMQ_FD fires again.
 *   - otherwise, after on_readable returns, ZMQ_EVENTS is checked and
 *     on_readable called again while it has POLLIN; still POLLIN after
 *     ZMQ_WATCH_BUDGET calls, a re-check is scheduled and the loop comes
 *     back without blocking (fair to other sockets and timers).
 *   - zmq_watch_after_send(w) must follow every send on the socket (also a
 *     failed one): it schedules a ZMQ_EVENTS re-check in the loop's next
 *     callback phase and keeps the poll before it from blocking.
 *   - on_readable runs from the ev_io or the ev_check callback, never from
 *     the prepare phase.
 *
 * Threading: loop thread only. The struct is embedded in its owner; its
 * address must stay fixed while started.
 */
#ifndef NODE_ZMQ_WATCH_H
#define NODE_ZMQ_WATCH_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

/* on_readable calls per wakeup before yielding to the rest of the loop. */
#define ZMQ_WATCH_BUDGET 16

struct zmq_watch;

/*
 * Reads up to a batch from w->sock with ZMQ_DONTWAIT; calls zmq_watch_drained
 * when a read found nothing (EAGAIN). May send on any socket.
 */
typedef void (*zmq_watch_fn)(struct zmq_watch *w);

struct zmq_watch {
    ev_io io;
    ev_check check;
    ev_idle idle;
    struct ev_loop *loop; /* borrowed */
    void *sock;           /* borrowed zmq socket; NULL when stopped */
    zmq_watch_fn on_readable;
    void *ctx;        /* borrowed; for the owner */
    bool pending;     /* ZMQ_EVENTS must be asked again; the idle runs meanwhile */
    bool drained;     /* the last on_readable call ended with EAGAIN */
    uint64_t wakeups; /* times the fd fired or a re-check ran (for tests/benches) */
};

/*
 * Starts watching sock (borrowed; the caller closes it after zmq_watch_stop).
 * 0 or NX_ERR_IO when ZMQ_FD cannot be read.
 */
int zmq_watch_start(struct zmq_watch *w, struct ev_loop *loop, void *sock, zmq_watch_fn on_readable,
                    void *ctx) NX_MUST_USE;

/* Stops both watchers; safe on a stopped or zeroed watch. */
void zmq_watch_stop(struct zmq_watch *w);

/* Call after every zmq_send on w->sock: schedules a ZMQ_EVENTS re-check. */
void zmq_watch_after_send(struct zmq_watch *w);

/*
 * Called by on_readable when zmq_recv/zmq_msg_recv with ZMQ_DONTWAIT failed
 * with EAGAIN (not on other errors): spares the ZMQ_EVENTS re-check.
 */
void zmq_watch_drained(struct zmq_watch *w);

bool zmq_watch_active(const struct zmq_watch *w);

#endif
