/*
 * placement.h - where an agent run goes: a pure function of the run's needs
 * and a view of the members.
 *
 * Owns: the filters (state, constraints, labels, CPU, memory, GPUs), the
 * score that ranks the members that fit, the random but seeded tie-break,
 * the per-member verdicts with their reasons ("needs 2 GPUs, has 1 free"),
 * the explanation when nothing fits, and the admission check a target node
 * runs against its real state before it accepts a run.
 *
 * Never touches: I/O, clocks, the logger, the heap, or any random source but
 * the struct nx_rng passed in. One decision is O(N) in the number of members
 * (O(N log k) when the best k are asked for) and writes only into arrays the
 * caller provides.
 *
 * The formula and the reasons for it are in docs/scheduling.md. In short:
 *
 *   score = (w_cpu * cpu_after/cpu_total + w_mem * mem_after/mem_total
 *            + w_gpu * gpu_after/gpu_free) / (w_cpu + w_mem + w_gpu)
 *
 * the weighted mean of the fractions left free after the run is placed
 * (w_gpu counts only when the run needs GPUs), times PLACE_GPU_SPARE_FACTOR
 * when a run without GPUs would sit on a member with free GPUs. Members are
 * ranked in tiers first: alive before suspect, and inside each, members not
 * on the run's avoid list (soft anti-affinity) before those on it. Within a
 * tier the highest score wins; exact ties are broken by a random key drawn
 * from the rng, so equal members share the runs.
 *
 * Suspect members ARE candidates, but of last resort: Lifeguard suspicion is
 * often a slow member rather than a dead one, and refusing every run while a
 * flapping mesh settles would be worse than one forward that times out and
 * moves to the next candidate. Dead and left members never are.
 */
#ifndef NX_NODE_PLACEMENT_H
#define NX_NODE_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "gossip/gossip.h"
#include "resources.h"

/* ---- limits ----------------------------------------------------------- */

#define PLACE_RULES_MAX 8            /* label rules per run */
#define PLACE_EXCLUDE_MAX 16         /* members a run must not go to */
#define PLACE_AVOID_MAX 16           /* members a run should rather not go to */
#define PLACE_MEMBERS_MAX (1u << 20) /* members per decision (= GOSSIP_MEMBERS_LIMIT) */
#define PLACE_REASON_MAX 160         /* bytes of one verdict or explanation, with NUL */
#define PLACE_GPU_SPARE_FACTOR 0.9   /* score factor: non-GPU run on a member with free GPUs */
#define PLACE_SCORE_STEPS (1u << 30) /* scores closer than 1/this are ties */

/* ---- what a run needs --------------------------------------------------- */

enum place_label_op {
    PLACE_LABEL_EQ = 0,     /* the member has key=value */
    PLACE_LABEL_NE = 1,     /* the member does not have key=value (absent key passes) */
    PLACE_LABEL_EXISTS = 2, /* the member has key, any value */
    PLACE_LABEL_ABSENT = 3, /* the member does not have key */
    PLACE_LABEL__COUNT = 4
};

struct place_label_rule {
    enum place_label_op op;
    char key[GOSSIP_LABEL_KEY_MAX + 1];     /* NUL-terminated */
    char value[GOSSIP_LABEL_VALUE_MAX + 1]; /* NUL-terminated; unused by EXISTS/ABSENT */
};

/* Weights of the score; all zero means the defaults (1, 1, 1). */
struct place_weights {
    double cpu;
    double mem;
    double gpu;
};

struct place_needs {
    uint32_t cpu_millicores;
    uint64_t mem_bytes;
    uint32_t gpus;
    uint64_t gpu_mem_bytes; /* per GPU; 0 = any GPU */
    uint32_t rule_count;
    struct place_label_rule rules[PLACE_RULES_MAX];
    uint32_t exclude_count; /* hard: never these members ("not on node X") */
    uint8_t exclude[PLACE_EXCLUDE_MAX][GOSSIP_ID_BYTES];
    uint32_t avoid_count; /* soft anti-affinity: only if nothing else fits */
    uint8_t avoid[PLACE_AVOID_MAX][GOSSIP_ID_BYTES];
    struct place_weights weights;
};

/*
 * Adds a constraint written as text to needs:
 *   "key=value"   PLACE_LABEL_EQ        "key!=value"  PLACE_LABEL_NE
 *   "key"         PLACE_LABEL_EXISTS    "!key"        PLACE_LABEL_ABSENT
 *   "node!=HEX"   exclude the member with that 64-hex-digit id
 *   "avoid=HEX"   avoid the member with that id
 * NX_ERR_INVAL for bad syntax or too long a key/value, NX_ERR_FULL when the
 * list is full. text is borrowed.
 */
int place_needs_add(struct place_needs *needs, const char *text) NX_MUST_USE;

/* ---- verdicts ------------------------------------------------------------ */

/* Why a member does not fit; checked in this order, the first failure wins. */
enum place_reason {
    PLACE_FITS = 0,
    PLACE_NOT_ALIVE = 1, /* dead or left */
    PLACE_EXCLUDED = 2,  /* on the run's exclude list */
    PLACE_LABEL = 3,     /* a label rule fails (rule holds its index) */
    PLACE_CPU = 4,
    PLACE_MEM = 5,
    PLACE_GPU = 6,     /* too few free GPUs at all */
    PLACE_GPU_MEM = 7, /* enough GPUs, too few with enough memory each */
    PLACE_REASON__COUNT = 8
};

/* Short name of a reason ("fits", "not_alive", "cpu", ...); never NULL. */
const char *place_reason_name(enum place_reason reason);

struct place_verdict {
    enum place_reason reason;
    uint8_t tier;  /* when it fits: 3 alive, 2 alive but avoided, 1 suspect, 0 both */
    uint8_t rule;  /* PLACE_LABEL: index of the failing rule */
    double score;  /* when it fits: in [0, 1], higher is better */
    uint64_t need; /* the failing dimension: what the run needs */
    uint64_t have; /* ... and what the member has free */
};

/* One ranked candidate. */
struct place_pick {
    uint32_t member; /* index into the members array */
    double score;
    uint64_t key; /* tier, quantised score, random tie-break: larger is better */
};

/* Per-dimension record of the best member that failed there (for "why not"). */
struct place_best {
    uint32_t count;  /* members whose first failure was this reason */
    uint32_t member; /* among them, the one with the most free in it */
    uint64_t have;
};

struct place_result {
    uint32_t fit_count;    /* members that fit */
    uint32_t picked_count; /* entries written to picks (min(fit_count, k)) */
    uint32_t alive_count;  /* members alive or suspect */
    struct place_best best[PLACE_REASON__COUNT];
};

/*
 * Ranks the members for a run.
 *
 * members[0..n) is the view (borrowed; gossip_member_info as gossip_member_get
 * returns it). verdicts, when not NULL, has n entries and receives one verdict
 * per member. picks has k entries and receives the best min(fit_count, k)
 * candidates, best first; k may be 0. rng supplies the tie-break (one draw per
 * member that fits), so the same seed and view give the same ranking.
 *
 * Returns 0 when at least one member fits, NX_ERR_LIMIT when none does
 * (res and verdicts then say why: see place_explain), NX_ERR_INVAL when n or
 * needs exceed their limits. res is always filled on 0 and NX_ERR_LIMIT.
 */
int place_rank(const struct place_needs *needs, const struct gossip_member_info *members, size_t n,
               struct nx_rng *rng, struct place_verdict *verdicts, struct place_pick *picks,
               size_t k, struct place_result *res) NX_MUST_USE;

/*
 * One member's verdict as text into buf (cap bytes, NUL-terminated, cut if
 * short): "fits, score 0.734", "fits, score 0.412 (last resort: suspect)",
 * "needs 2 GPUs, has 1 free", "needs 4096 MiB, has 1024 MiB free",
 * "missing label zone=eu", "not alive (dead)". Returns buf.
 */
const char *place_verdict_format(const struct place_verdict *v, const struct place_needs *needs,
                                 const struct gossip_member_info *member, char *buf, size_t cap);

/*
 * Why nothing fits, from the result of a place_rank that returned
 * NX_ERR_LIMIT: names the dimension that stopped most members and the member
 * that came closest, e.g. "no member has 2 GPUs free; the most free is node
 * ab12cd34 with 1". Returns buf.
 */
const char *place_explain(const struct place_result *res, const struct place_needs *needs,
                          const struct gossip_member_info *members, size_t n, char *buf,
                          size_t cap);

/*
 * Charges a placed run to the view (optimistic accounting until the member's
 * next gossip update): subtracts CPU and memory, and removes the GPUs it
 * would take. Lets a burst of runs spread instead of all going to the member
 * that was best before the first of them.
 */
void place_charge(struct gossip_member_info *member, const struct place_needs *needs);

/* ---- admission at the target --------------------------------------------- */

/*
 * The target node's check before it accepts a run, against its real state:
 * avail is node_resources_detect* followed by node_resources_subtract (free
 * resources minus what admitted runs reserve), labels the node's own
 * (borrowed, label_count entries), self_id its id. Label rules and the
 * exclude list are checked again, in case the view was stale.
 *
 * Returns 0 to admit, NX_ERR_LIMIT to refuse with *why filled (the caller
 * formats it with place_verdict_format and tries the next candidate), or
 * NX_ERR_INVAL for needs beyond their limits. Admitting does not reserve:
 * follow it with node_resources_reserve on the same loop turn.
 */
int place_admit(const struct place_needs *needs, const uint8_t self_id[GOSSIP_ID_BYTES],
                const struct node_resources *avail, const struct gossip_label *labels,
                size_t label_count, struct place_verdict *why) NX_MUST_USE;

#endif
