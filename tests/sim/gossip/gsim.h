/*
 * gsim.h - a deterministic in-process simulator for gossip cores.
 *
 * N gossip_core instances share one virtual clock and a simulated network
 * with per-message latency, random loss, partitions (groups that cannot
 * reach each other), crashes and per-node slowdown. Everything random comes
 * from one seed, so a run replays exactly. Used by tests/sim/gossip and by
 * bench/gossip.
 *
 * A slowed node (factor s) models a CPU-starved process: messages addressed
 * to it are handled s times later than the network latency alone would make
 * them, and its timers fire (s-1) * GSIM_TIMER_QUANTUM_MS late.
 *
 * While it runs, the simulator checks after every step that no healthy node
 * (not crashed, not left) is declared dead by another node that could reach
 * it (not across an active partition), and records the first violation.
 */
#ifndef NX_GSIM_H
#define NX_GSIM_H

#include <stdbool.h>
#include <stdint.h>

#include "gossip/gossip.h"

#define GSIM_TIMER_QUANTUM_MS 10
#define GSIM_NODES_MAX 20000

struct gsim_config {
    uint32_t n;          /* nodes at start */
    uint64_t seed;       /* the whole run follows from this */
    uint32_t lat_min_ms; /* one-way latency, uniform in [min, max] */
    uint32_t lat_max_ms;
    double loss;       /* probability that a message is lost */
    uint32_t view;     /* 0: everyone knows everyone; else each node knows
                          this many random others at start */
    uint32_t capacity; /* nodes that may be added later (>= n) */
    struct gossip_config gossip;
};

struct gsim_stats {
    uint64_t false_deaths;     /* healthy node declared dead (invariant) */
    uint64_t false_suspicions; /* healthy node suspected (events, all observers) */
    uint64_t slow_suspicions;  /* of which about a slowed node */
    uint64_t raised_healthy;   /* raised by a node's own failed probe, about a
                                  healthy node that is not slowed (see
                                  gsim_set_slow) */
    uint64_t raised_slowed;    /* raised by a failed probe, about a slowed node */
    uint64_t raised_by_slowed; /* raised by a slowed node's failed probe */
    uint64_t deaths;           /* all DEAD events */
    uint64_t messages;         /* messages sent */
    uint64_t bytes;            /* bytes sent */
    uint64_t bytes_push_pull;  /* of which push-pull (anti-entropy) */
    uint64_t lost;             /* dropped by loss, partition or crash */
    char first_violation[160]; /* text of the first false death, or "" */
};

struct gsim;

/*
 * Optional observers, for benchmarks and debugging: every event a core emits
 * (trace events too when gossip.trace is set; from_tick tells a timer's
 * doing from a message's), and every message the network loses.
 */
struct gsim_hooks {
    void (*event)(void *ctx, uint32_t observer, const struct gossip_event *e, bool from_tick);
    void (*lost)(void *ctx, uint32_t from, uint32_t to, const uint8_t *msg, uint32_t len);
    void *ctx;
};

/* NX_SIM_QUICK=1, or a sanitizer build: callers run fewer seeds and members. */
bool gsim_quick(void);

/* NULL on bad config or no memory. */
struct gsim *gsim_create(const struct gsim_config *cfg);
void gsim_destroy(struct gsim *s);

/* Runs every event due up to and including t_ms; now becomes t_ms. */
void gsim_run_until(struct gsim *s, uint64_t t_ms);
uint64_t gsim_now(const struct gsim *s);

/* Adds a node that joins through node `via`; returns its index or -1. */
int gsim_add_node(struct gsim *s, uint32_t via);
void gsim_crash(struct gsim *s, uint32_t node);
/*
 * Restarts a crashed node: memory lost, same id, the given starting
 * incarnation, joining through node `via`. 0 or -1.
 */
int gsim_restart(struct gsim *s, uint32_t node, uint64_t incarnation, uint32_t via);
void gsim_leave(struct gsim *s, uint32_t node);
/*
 * factor 1 ends a slowdown. For the suspicion counts in gsim_stats a node
 * still counts as slowed after that for lat_max_ms * factor (messages sent
 * to it while slowed are still arriving late) plus two protocol periods
 * (probes that met the slowdown are still ending).
 */
void gsim_set_slow(struct gsim *s, uint32_t node, uint32_t factor);
/* group[i] for each node; messages between groups are lost. NULL heals. */
void gsim_partition(struct gsim *s, const uint8_t *group);

uint32_t gsim_count(const struct gsim *s);
struct gossip_core *gsim_core(struct gsim *s, uint32_t node);
const uint8_t *gsim_id(const struct gsim *s, uint32_t node);
bool gsim_healthy(const struct gsim *s, uint32_t node);
const struct gsim_stats *gsim_stats(const struct gsim *s);

/* Healthy observers that do not see `member` in `state`. */
uint32_t gsim_count_not_in_state(const struct gsim *s, uint32_t member, enum gossip_state state);
/* Pairs (healthy observer, healthy member) where the member is not alive. */
uint64_t gsim_unconverged_pairs(const struct gsim *s);
/* Prints those pairs to stderr (for failing tests). */
void gsim_print_unconverged(const struct gsim *s);
void gsim_set_loss(struct gsim *s, double loss);
/* Installs observers (copied); NULL removes them. */
void gsim_set_hooks(struct gsim *s, const struct gsim_hooks *hooks);

#endif
