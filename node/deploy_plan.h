/*
 * deploy_plan.h - which member runs each replica of each deployment: a pure
 * function of what is wanted, what is assigned and the member view.
 *
 * Owns: the reconciliation rules below and the list of changes they produce.
 * Never touches: I/O, clocks (now_ms comes in), the heap, randomness other
 * than the struct nx_rng passed in. The Raft leader calls it (deploy.c) and
 * writes the changes through Raft; every node runs what is assigned to it.
 *
 * Rules, per deployment:
 *   1. A replica stays where it is while its member is alive or suspect, or
 *      dead/left for less than grace_ms: no churn on a flapping mesh.
 *   2. A replica whose member is gone (dead or left for grace_ms or more, or
 *      unknown to gossip) is moved: to the best member per place_rank, with
 *      the members that already hold a replica of the same deployment
 *      avoided (soft anti-affinity: spread when possible, pack when not).
 *   3. Missing replicas (index < wanted, unassigned) are placed the same way;
 *      replicas with index >= wanted, and all of a deployment no longer
 *      wanted, are unassigned.
 *   4. Each placement is charged to the view (place_charge), so the replicas
 *      of one round spread over the members like single runs do.
 *   5. A replica nothing can hold stays unassigned, and the change says why
 *      (place_explain), so `nexus agent ps` can show it.
 */
#ifndef NX_NODE_DEPLOY_PLAN_H
#define NX_NODE_DEPLOY_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "gossip/gossip.h"
#include "placement.h"

#define DEPLOY_NAME_MAX 64
#define DEPLOY_REPLICAS_MAX 64 /* per deployment */

/* One deployment as wanted: its name, replica count and what each replica needs. */
struct deploy_want {
    char name[DEPLOY_NAME_MAX + 1];
    uint32_t replicas;
    struct place_needs needs;
};

/* One replica's current home. */
struct deploy_assignment {
    char name[DEPLOY_NAME_MAX + 1];
    uint32_t replica; /* 0-based index */
    uint8_t node[GOSSIP_ID_BYTES];
};

enum deploy_change_kind {
    DEPLOY_ASSIGN = 1,   /* (re)assign the replica to node */
    DEPLOY_UNASSIGN = 2, /* remove the replica (scale down, deployment gone) */
    DEPLOY_PENDING = 3,  /* wanted, but nothing fits: why says so */
};

struct deploy_change {
    enum deploy_change_kind kind;
    char name[DEPLOY_NAME_MAX + 1];
    uint32_t replica;
    uint8_t node[GOSSIP_ID_BYTES]; /* ASSIGN: the new home */
    bool moved;                    /* ASSIGN: it had a home that is gone */
    char why[PLACE_REASON_MAX];    /* PENDING: place_explain's text */
};

struct deploy_plan_input {
    const struct deploy_want *wants;
    size_t n_wants;
    const struct deploy_assignment *current;
    size_t n_current;
    struct gossip_member_info *members; /* the view; place_charge updates it */
    size_t n_members;
    uint64_t now_ms;   /* the clock of members[].state_change_ms */
    uint64_t grace_ms; /* rule 1 */
};

/*
 * Computes the changes into out (cap entries); *n_out is set. Returns 0, or
 * NX_ERR_FULL when out is too small (the first cap changes are valid: apply
 * them and plan again), NX_ERR_INVAL for bad input (a replica count above
 * DEPLOY_REPLICAS_MAX, too many members).
 */
int deploy_plan(const struct deploy_plan_input *in, struct nx_rng *rng, struct deploy_change *out,
                size_t cap, size_t *n_out) NX_MUST_USE;

/* Whether a member counts as gone for rule 2 (exposed for the host and tests). */
bool deploy_member_gone(const struct gossip_member_info *m, uint64_t now_ms, uint64_t grace_ms);

#endif
