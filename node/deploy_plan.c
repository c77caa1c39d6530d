/*
 * deploy_plan.c - the deployment reconciliation rules (deploy_plan.h).
 */
#include <stdio.h>
#include <string.h>

#include "deploy_plan.h"

bool deploy_member_gone(const struct gossip_member_info *m, uint64_t now_ms, uint64_t grace_ms)
{
    if (m == NULL)
        return true; /* gossip does not know it (any more) */
    if (m->state != GOSSIP_DEAD && m->state != GOSSIP_LEFT)
        return false;
    return now_ms >= m->state_change_ms && now_ms - m->state_change_ms >= grace_ms;
}

static const struct deploy_want *find_want(const struct deploy_plan_input *in, const char *name)
{
    for (size_t i = 0; i < in->n_wants; i++)
        if (strcmp(in->wants[i].name, name) == 0)
            return &in->wants[i];
    return NULL;
}

static const struct deploy_assignment *find_assignment(const struct deploy_plan_input *in,
                                                       const char *name, uint32_t replica)
{
    for (size_t i = 0; i < in->n_current; i++)
        if (in->current[i].replica == replica && strcmp(in->current[i].name, name) == 0)
            return &in->current[i];
    return NULL;
}

static struct gossip_member_info *find_member(const struct deploy_plan_input *in,
                                              const uint8_t id[GOSSIP_ID_BYTES])
{
    for (size_t i = 0; i < in->n_members; i++)
        if (memcmp(in->members[i].id, id, GOSSIP_ID_BYTES) == 0)
            return &in->members[i];
    return NULL;
}

struct emitter {
    struct deploy_change *out;
    size_t cap;
    size_t n;
};

static struct deploy_change *emit(struct emitter *e, enum deploy_change_kind kind, const char *name,
                                  uint32_t replica)
{
    if (e->n == e->cap)
        return NULL;
    struct deploy_change *c = &e->out[e->n++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->replica = replica;
    return c;
}

/* Rule 3, second half: replicas no deployment wants any more. */
static int unassign_unwanted(const struct deploy_plan_input *in, struct emitter *e)
{
    for (size_t i = 0; i < in->n_current; i++) {
        const struct deploy_assignment *a = &in->current[i];
        const struct deploy_want *w = find_want(in, a->name);
        if (w != NULL && a->replica < w->replicas)
            continue;
        if (emit(e, DEPLOY_UNASSIGN, a->name, a->replica) == NULL)
            return NX_ERR_FULL;
    }
    return NX_OK;
}

/* Members holding a replica of w: the avoid list of its next placement. */
static void avoid_holder(struct place_needs *needs, const uint8_t id[GOSSIP_ID_BYTES])
{
    if (needs->avoid_count < PLACE_AVOID_MAX)
        memcpy(needs->avoid[needs->avoid_count++], id, GOSSIP_ID_BYTES);
}

static int place_replica(const struct deploy_plan_input *in, const struct deploy_want *w,
                         struct place_needs *needs, uint32_t r, bool moved, struct nx_rng *rng,
                         struct emitter *e)
{
    struct place_pick pick;
    struct place_result res;
    int rc = place_rank(needs, in->members, in->n_members, rng, NULL, &pick, 1, &res);
    if (rc == NX_ERR_LIMIT) {
        struct deploy_change *c = emit(e, DEPLOY_PENDING, w->name, r);
        if (c == NULL)
            return NX_ERR_FULL;
        place_explain(&res, needs, in->members, in->n_members, c->why, sizeof c->why);
        return NX_OK;
    }
    if (rc != NX_OK)
        return rc;
    struct gossip_member_info *m = &in->members[pick.member];
    struct deploy_change *c = emit(e, DEPLOY_ASSIGN, w->name, r);
    if (c == NULL)
        return NX_ERR_FULL;
    memcpy(c->node, m->id, GOSSIP_ID_BYTES);
    c->moved = moved;
    place_charge(m, &w->needs);
    avoid_holder(needs, m->id);
    return NX_OK;
}

/* Rules 1, 2, 3 and 5 for one deployment. */
static int plan_want(const struct deploy_plan_input *in, const struct deploy_want *w,
                     struct nx_rng *rng, struct emitter *e)
{
    if (w->replicas > DEPLOY_REPLICAS_MAX)
        return NX_ERR_INVAL;
    struct place_needs needs = w->needs;
    bool keep[DEPLOY_REPLICAS_MAX] = {false};
    bool had[DEPLOY_REPLICAS_MAX] = {false};
    for (uint32_t r = 0; r < w->replicas; r++) {
        const struct deploy_assignment *a = find_assignment(in, w->name, r);
        had[r] = a != NULL;
        if (a && !deploy_member_gone(find_member(in, a->node), in->now_ms, in->grace_ms)) {
            keep[r] = true;
            avoid_holder(&needs, a->node);
        }
    }
    for (uint32_t r = 0; r < w->replicas; r++) {
        if (keep[r])
            continue;
        int rc = place_replica(in, w, &needs, r, had[r], rng, e);
        if (rc != NX_OK)
            return rc;
    }
    return NX_OK;
}

int deploy_plan(const struct deploy_plan_input *in, struct nx_rng *rng, struct deploy_change *out,
                size_t cap, size_t *n_out)
{
    struct emitter e = {out, cap, 0};
    *n_out = 0;
    if (in->n_members > PLACE_MEMBERS_MAX)
        return NX_ERR_INVAL;
    int rc = unassign_unwanted(in, &e);
    for (size_t i = 0; i < in->n_wants && rc == NX_OK; i++)
        rc = plan_want(in, &in->wants[i], rng, &e);
    *n_out = e.n;
    return rc;
}
