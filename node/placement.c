/*
 * placement.c - filters, score, seeded tie-break and top-k selection for
 * agent runs, plus the verdict texts and the admission check.
 *
 * One pass over the members: each gets a verdict (the first filter it fails,
 * or its score), fitting members go through a min-heap of size k keyed by a
 * single 64-bit number, and each failure reason keeps its count and the
 * member that came closest, so the "why nothing fits" text needs no second
 * pass. Nothing is allocated; the only output is what the caller passed in.
 *
 * Sort key of a fitting member (larger is better):
 *
 *   bits 63..62  tier: 3 alive, 2 alive but avoided, 1 suspect, 0 suspect and avoided
 *   bits 61..32  score quantised to PLACE_SCORE_STEPS levels
 *   bits 31..0   random draw: breaks exact ties uniformly, reproducibly per seed
 */
#include "placement.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024ull * 1024ull)

static_assert(PLACE_SCORE_STEPS <= (1ull << 30), "score must fit bits 61..32 of the key");
static_assert(PLACE_MEMBERS_MAX <= UINT32_MAX, "member indexes are uint32_t");
static_assert(PLACE_RULES_MAX <= UINT8_MAX, "rule index is a uint8_t");

/* What the filters read of a member; gossip metadata and node_resources both map onto it. */
struct caps {
    uint32_t cpu_free, cpu_total;
    uint64_t mem_free, mem_total;
    uint32_t gpu_free;      /* free GPUs */
    uint32_t gpu_mem_count; /* entries in gpu_mem, <= gpu_free */
    const uint64_t *gpu_mem;
    const struct gossip_label *labels;
    uint32_t label_count;
};

const char *place_reason_name(enum place_reason reason)
{
    static const char *const names[PLACE_REASON__COUNT] = {
        "fits", "not_alive", "excluded", "label", "cpu", "mem", "gpu", "gpu_mem"};
    return (unsigned)reason < PLACE_REASON__COUNT ? names[reason] : "unknown";
}

/* ---- filters ----------------------------------------------------------- */

static bool id_listed(const uint8_t (*list)[GOSSIP_ID_BYTES], uint32_t count, const uint8_t *id)
{
    for (uint32_t i = 0; i < count; i++)
        if (memcmp(list[i], id, GOSSIP_ID_BYTES) == 0)
            return true;
    return false;
}

/* The value of key among labels, or NULL. */
static const char *label_get(const struct gossip_label *labels, uint32_t count, const char *key)
{
    for (uint32_t i = 0; i < count; i++)
        if (labels[i].key[0] == key[0] && strncmp(labels[i].key, key, sizeof labels[i].key) == 0)
            return labels[i].value;
    return NULL;
}

static bool rule_holds(const struct place_label_rule *rule, const struct caps *c)
{
    const char *v = label_get(c->labels, c->label_count, rule->key);
    switch (rule->op) {
    case PLACE_LABEL_EQ:
        return v != NULL && strncmp(v, rule->value, GOSSIP_LABEL_VALUE_MAX + 1) == 0;
    case PLACE_LABEL_NE:
        return v == NULL || strncmp(v, rule->value, GOSSIP_LABEL_VALUE_MAX + 1) != 0;
    case PLACE_LABEL_EXISTS:
        return v != NULL;
    case PLACE_LABEL_ABSENT:
        return v == NULL;
    default:
        return false; /* rejected by needs_valid before we get here */
    }
}

/* GPUs among the free ones with at least mem bytes each (all of them when mem is 0). */
static uint32_t gpus_with_mem(const struct caps *c, uint64_t mem)
{
    if (mem == 0)
        return c->gpu_free;
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->gpu_mem_count; i++)
        n += c->gpu_mem[i] >= mem;
    return n;
}

static double frac(uint64_t left, uint64_t total)
{
    if (total == 0)
        return 0.0;
    double f = (double)left / (double)total;
    return f > 1.0 ? 1.0 : f;
}

/* Resources only (labels and lists are checked by the caller). Fills v; true when it fits. */
static bool check_resources(const struct place_needs *nd, const struct caps *c,
                            struct place_verdict *v)
{
    if (c->cpu_free < nd->cpu_millicores) {
        *v = (struct place_verdict){
            .reason = PLACE_CPU, .need = nd->cpu_millicores, .have = c->cpu_free};
        return false;
    }
    if (c->mem_free < nd->mem_bytes) {
        *v =
            (struct place_verdict){.reason = PLACE_MEM, .need = nd->mem_bytes, .have = c->mem_free};
        return false;
    }
    if (c->gpu_free < nd->gpus) {
        *v = (struct place_verdict){.reason = PLACE_GPU, .need = nd->gpus, .have = c->gpu_free};
        return false;
    }
    if (nd->gpus > 0 && nd->gpu_mem_bytes > 0) {
        uint32_t ok = gpus_with_mem(c, nd->gpu_mem_bytes);
        if (ok < nd->gpus) {
            *v = (struct place_verdict){.reason = PLACE_GPU_MEM, .need = nd->gpus, .have = ok};
            return false;
        }
    }
    v->reason = PLACE_FITS;
    return true;
}

static double score_of(const struct place_needs *nd, const struct caps *c)
{
    double wc = nd->weights.cpu, wm = nd->weights.mem, wg = nd->weights.gpu;
    if (wc == 0 && wm == 0 && wg == 0)
        wc = wm = wg = 1.0;
    double sum = wc * frac(c->cpu_free - nd->cpu_millicores, c->cpu_total) +
                 wm * frac(c->mem_free - nd->mem_bytes, c->mem_total);
    double wsum = wc + wm;
    if (nd->gpus > 0) {
        sum += wg * frac(c->gpu_free - nd->gpus, c->gpu_free);
        wsum += wg;
    }
    double s = wsum > 0 ? sum / wsum : 0.0;
    if (nd->gpus == 0 && c->gpu_free > 0)
        s *= PLACE_GPU_SPARE_FACTOR; /* keep GPU members for runs that need GPUs */
    return s;
}

/* Everything but the state: exclusion, labels, resources, then the score. */
static bool check(const struct place_needs *nd, const uint8_t *id, const struct caps *c,
                  struct place_verdict *v)
{
    if (nd->exclude_count > 0 && id_listed(nd->exclude, nd->exclude_count, id)) {
        *v = (struct place_verdict){.reason = PLACE_EXCLUDED};
        return false;
    }
    for (uint32_t r = 0; r < nd->rule_count; r++) {
        if (!rule_holds(&nd->rules[r], c)) {
            *v = (struct place_verdict){.reason = PLACE_LABEL, .rule = (uint8_t)r};
            return false;
        }
    }
    if (!check_resources(nd, c, v))
        return false;
    v->score = score_of(nd, c);
    v->need = v->have = 0;
    v->rule = 0;
    return true;
}

static void caps_from_meta(struct caps *c, const struct gossip_meta *m)
{
    c->cpu_free = m->cpu_free_millicores;
    c->cpu_total = m->cpu_total_millicores;
    c->mem_free = m->mem_free_bytes;
    c->mem_total = m->mem_total_bytes;
    c->gpu_free = m->gpu_count;
    c->gpu_mem_count = m->gpu_mem_count < m->gpu_count ? m->gpu_mem_count : m->gpu_count;
    if (c->gpu_mem_count > GOSSIP_GPUS_MAX)
        c->gpu_mem_count = GOSSIP_GPUS_MAX;
    c->gpu_mem = m->gpu_mem_bytes;
    c->labels = m->labels;
    c->label_count = m->label_count < GOSSIP_LABELS_MAX ? m->label_count : GOSSIP_LABELS_MAX;
}

static bool needs_valid(const struct place_needs *nd)
{
    if (nd->rule_count > PLACE_RULES_MAX || nd->exclude_count > PLACE_EXCLUDE_MAX ||
        nd->avoid_count > PLACE_AVOID_MAX)
        return false;
    for (uint32_t r = 0; r < nd->rule_count; r++) {
        const struct place_label_rule *rule = &nd->rules[r];
        if ((unsigned)rule->op >= PLACE_LABEL__COUNT ||
            memchr(rule->key, '\0', sizeof rule->key) == NULL ||
            memchr(rule->value, '\0', sizeof rule->value) == NULL)
            return false; /* the texts print these with %s */
    }
    const double w[3] = {nd->weights.cpu, nd->weights.mem, nd->weights.gpu};
    for (int i = 0; i < 3; i++)
        if (!(w[i] >= 0 && w[i] <= 1e6)) /* also rejects NaN */
            return false;
    return true;
}

/* ---- top-k min-heap on place_pick.key ------------------------------------ */

static void sift_down(struct place_pick *h, size_t n, size_t i)
{
    struct place_pick x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h[c + 1].key < h[c].key)
            c++;
        if (h[c].key >= x.key)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void sift_up(struct place_pick *h, size_t i)
{
    struct place_pick x = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].key <= x.key)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

/* Sorts a min-heap of n picks in place into descending key order. */
static void heap_sort_desc(struct place_pick *h, size_t n)
{
    while (n > 1) {
        struct place_pick t = h[0];
        h[0] = h[n - 1];
        h[n - 1] = t;
        n--;
        sift_down(h, n, 0);
    }
}

static uint64_t key_of(unsigned tier, double score, uint64_t random)
{
    double s = score < 0 ? 0 : score > 1 ? 1 : score;
    uint64_t q = (uint64_t)(s * (double)(PLACE_SCORE_STEPS - 1));
    return ((uint64_t)tier << 62) | (q << 32) | (random >> 32);
}

/* ---- ranking ------------------------------------------------------------- */

static void note_failure(struct place_result *res, const struct place_verdict *v, uint32_t idx)
{
    struct place_best *b = &res->best[v->reason];
    uint64_t have = v->reason == PLACE_LABEL ? v->rule : v->have;
    if (b->count == 0 || (v->reason != PLACE_LABEL && have > b->have)) {
        b->member = idx;
        b->have = have;
    }
    b->count++;
}

int place_rank(const struct place_needs *needs, const struct gossip_member_info *members, size_t n,
               struct nx_rng *rng, struct place_verdict *verdicts, struct place_pick *picks,
               size_t k, struct place_result *res)
{
    if (n > PLACE_MEMBERS_MAX || (k > 0 && picks == NULL) || !needs_valid(needs))
        return NX_ERR_INVAL;
    memset(res, 0, sizeof *res);
    size_t heap_n = 0;
    for (size_t i = 0; i < n; i++) {
        const struct gossip_member_info *m = &members[i];
        struct place_verdict v = {.reason = PLACE_FITS};
        bool fits;
        if (m->state != GOSSIP_ALIVE && m->state != GOSSIP_SUSPECT) {
            v.reason = PLACE_NOT_ALIVE;
            fits = false;
        } else {
            res->alive_count++;
            struct caps c;
            caps_from_meta(&c, &m->meta);
            fits = check(needs, m->id, &c, &v);
        }
        if (fits) {
            unsigned tier = m->state == GOSSIP_ALIVE ? 2 : 0;
            if (needs->avoid_count == 0 || !id_listed(needs->avoid, needs->avoid_count, m->id))
                tier++;
            v.tier = (uint8_t)tier;
            struct place_pick p = {(uint32_t)i, v.score, key_of(tier, v.score, nx_rng_next(rng))};
            res->fit_count++;
            if (heap_n < k) {
                picks[heap_n] = p;
                sift_up(picks, heap_n++);
            } else if (k > 0 && p.key > picks[0].key) {
                picks[0] = p;
                sift_down(picks, heap_n, 0);
            }
        } else {
            note_failure(res, &v, (uint32_t)i);
        }
        if (verdicts != NULL)
            verdicts[i] = v;
    }
    heap_sort_desc(picks, heap_n);
    res->picked_count = (uint32_t)heap_n;
    return res->fit_count > 0 ? NX_OK : NX_ERR_LIMIT;
}

void place_charge(struct gossip_member_info *member, const struct place_needs *needs)
{
    struct gossip_meta *m = &member->meta;
    m->cpu_free_millicores -= needs->cpu_millicores < m->cpu_free_millicores
                                  ? needs->cpu_millicores
                                  : m->cpu_free_millicores;
    m->mem_free_bytes -=
        needs->mem_bytes < m->mem_free_bytes ? needs->mem_bytes : m->mem_free_bytes;
    uint32_t take = needs->gpus < m->gpu_count ? needs->gpus : m->gpu_count;
    uint32_t listed = m->gpu_mem_count < GOSSIP_GPUS_MAX ? m->gpu_mem_count : GOSSIP_GPUS_MAX;
    uint32_t taken = 0, kept = 0;
    /* the same GPUs the target will pick: the first ones with enough memory */
    for (uint32_t i = 0; i < listed; i++) {
        if (taken < take && m->gpu_mem_bytes[i] >= needs->gpu_mem_bytes) {
            taken++;
            continue;
        }
        m->gpu_mem_bytes[kept++] = m->gpu_mem_bytes[i];
    }
    m->gpu_mem_count = kept;
    m->gpu_count -= take;
}

/* ---- admission --------------------------------------------------------- */

int place_admit(const struct place_needs *needs, const uint8_t self_id[GOSSIP_ID_BYTES],
                const struct node_resources *avail, const struct gossip_label *labels,
                size_t label_count, struct place_verdict *why)
{
    if (!needs_valid(needs))
        return NX_ERR_INVAL;
    struct caps c = {
        .cpu_free = avail->cpu_free_millicores,
        .cpu_total = avail->cpu_total_millicores,
        .mem_free = avail->mem_free_bytes,
        .mem_total = avail->mem_total_bytes,
        .gpu_free = avail->gpu_count < NODE_GPUS_MAX ? avail->gpu_count : NODE_GPUS_MAX,
        .gpu_mem = avail->gpu_mem_bytes,
        .labels = labels,
        .label_count = label_count < GOSSIP_LABELS_MAX ? (uint32_t)label_count : GOSSIP_LABELS_MAX,
    };
    c.gpu_mem_count = c.gpu_free;
    *why = (struct place_verdict){.reason = PLACE_FITS};
    if (!check(needs, self_id, &c, why))
        return NX_ERR_LIMIT;
    why->tier = 3;
    return NX_OK;
}

/* ---- text -------------------------------------------------------------- */

/* A memory size for people: "4096 MiB", "1.5 MiB", "512 bytes". */
static void fmt_mem(char *out, size_t cap, uint64_t bytes)
{
    if (bytes >= MIB && bytes % MIB == 0)
        snprintf(out, cap, "%llu MiB", (unsigned long long)(bytes / MIB));
    else if (bytes >= MIB)
        snprintf(out, cap, "%.1f MiB", (double)bytes / (double)MIB);
    else
        snprintf(out, cap, "%llu bytes", (unsigned long long)bytes);
}

static void short_id(char out[9], const uint8_t *id)
{
    nx_hex_encode(out, id, 4);
}

static const char *rule_text(const struct place_label_rule *r, char *out, size_t cap)
{
    switch (r->op) {
    case PLACE_LABEL_EQ:
        snprintf(out, cap, "missing label %s=%s", r->key, r->value);
        break;
    case PLACE_LABEL_NE:
        snprintf(out, cap, "has label %s=%s", r->key, r->value);
        break;
    case PLACE_LABEL_EXISTS:
        snprintf(out, cap, "missing label %s", r->key);
        break;
    default:
        snprintf(out, cap, "has label %s", r->key);
        break;
    }
    return out;
}

const char *place_verdict_format(const struct place_verdict *v, const struct place_needs *needs,
                                 const struct gossip_member_info *member, char *buf, size_t cap)
{
    char a[32], b[32];
    if (cap == 0)
        return buf;
    switch (v->reason) {
    case PLACE_FITS:
        snprintf(buf, cap, "fits, score %.3f%s", v->score,
                 v->tier == 3   ? ""
                 : v->tier == 2 ? " (avoided: only if nothing else fits)"
                 : v->tier == 1 ? " (last resort: suspect)"
                                : " (last resort: suspect and avoided)");
        break;
    case PLACE_NOT_ALIVE:
        snprintf(buf, cap, "not alive (%s)", member ? gossip_state_name(member->state) : "?");
        break;
    case PLACE_EXCLUDED:
        snprintf(buf, cap, "excluded by the run's constraints");
        break;
    case PLACE_LABEL:
        if (v->rule < needs->rule_count)
            rule_text(&needs->rules[v->rule], buf, cap);
        else
            snprintf(buf, cap, "a label rule fails");
        break;
    case PLACE_CPU:
        snprintf(buf, cap, "needs %llu millicores, has %llu free", (unsigned long long)v->need,
                 (unsigned long long)v->have);
        break;
    case PLACE_MEM:
        fmt_mem(a, sizeof a, v->need);
        fmt_mem(b, sizeof b, v->have);
        snprintf(buf, cap, "needs %s, has %s free", a, b);
        break;
    case PLACE_GPU:
        snprintf(buf, cap, "needs %llu GPU%s, has %llu free", (unsigned long long)v->need,
                 v->need == 1 ? "" : "s", (unsigned long long)v->have);
        break;
    case PLACE_GPU_MEM:
        fmt_mem(a, sizeof a, needs->gpu_mem_bytes);
        snprintf(buf, cap, "needs %llu GPU%s with %s each, has %llu", (unsigned long long)v->need,
                 v->need == 1 ? "" : "s", a, (unsigned long long)v->have);
        break;
    default:
        snprintf(buf, cap, "unknown verdict");
        break;
    }
    return buf;
}

/* The reason that stopped the most members (ties: the later check, the more specific). */
static enum place_reason main_reason(const struct place_result *res)
{
    /* NOT_ALIVE is left out: with an alive member, the alive ones are the question */
    enum place_reason best = PLACE_EXCLUDED;
    for (int r = PLACE_EXCLUDED; r < PLACE_REASON__COUNT; r++)
        if (res->best[r].count > 0 && res->best[r].count >= res->best[best].count)
            best = (enum place_reason)r;
    return best;
}

const char *place_explain(const struct place_result *res, const struct place_needs *needs,
                          const struct gossip_member_info *members, size_t n, char *buf, size_t cap)
{
    char a[32], b[32], id[9] = "?";
    if (cap == 0)
        return buf;
    if (res->fit_count > 0) {
        snprintf(buf, cap, "%u of %zu members fit", res->fit_count, n);
        return buf;
    }
    if (n == 0) {
        snprintf(buf, cap, "no members known");
        return buf;
    }
    if (res->alive_count == 0) {
        snprintf(buf, cap, "no member is alive (%zu known, all dead or left)", n);
        return buf;
    }
    enum place_reason r = main_reason(res);
    const struct place_best *best = &res->best[r];
    if (best->member < n)
        short_id(id, members[best->member].id);
    const char *tail = "";
    char more[80] = "";
    if (best->count < res->alive_count) {
        snprintf(more, sizeof more, " (%u of %u alive members stop here)", best->count,
                 res->alive_count);
        tail = more;
    }
    switch (r) {
    case PLACE_EXCLUDED:
        snprintf(buf, cap, "every alive member is excluded by the run's constraints%s", tail);
        break;
    case PLACE_LABEL: {
        char rule[PLACE_REASON_MAX];
        const struct place_label_rule *lr =
            best->have < needs->rule_count ? &needs->rules[best->have] : NULL;
        if (lr == NULL)
            snprintf(rule, sizeof rule, "a label rule");
        else if (lr->op == PLACE_LABEL_EQ || lr->op == PLACE_LABEL_EXISTS)
            snprintf(rule, sizeof rule, "no member has label %s%s%s", lr->key,
                     lr->op == PLACE_LABEL_EQ ? "=" : "",
                     lr->op == PLACE_LABEL_EQ ? lr->value : "");
        else
            snprintf(rule, sizeof rule, "every member has label %s%s%s", lr->key,
                     lr->op == PLACE_LABEL_NE ? "=" : "",
                     lr->op == PLACE_LABEL_NE ? lr->value : "");
        snprintf(buf, cap, "%s%s", rule, tail);
        break;
    }
    case PLACE_CPU:
        snprintf(
            buf, cap, "no member has %llu millicores free; the most free is node %s with %llu%s",
            (unsigned long long)needs->cpu_millicores, id, (unsigned long long)best->have, tail);
        break;
    case PLACE_MEM:
        fmt_mem(a, sizeof a, needs->mem_bytes);
        fmt_mem(b, sizeof b, best->have);
        snprintf(buf, cap, "no member has %s free; the most free is node %s with %s%s", a, id, b,
                 tail);
        break;
    case PLACE_GPU:
        snprintf(buf, cap, "no member has %u GPU%s free; the most free is node %s with %llu%s",
                 needs->gpus, needs->gpus == 1 ? "" : "s", id, (unsigned long long)best->have,
                 tail);
        break;
    case PLACE_GPU_MEM:
        fmt_mem(a, sizeof a, needs->gpu_mem_bytes);
        snprintf(
            buf, cap, "no member has %u GPU%s with %s each; the closest is node %s with %llu%s",
            needs->gpus, needs->gpus == 1 ? "" : "s", a, id, (unsigned long long)best->have, tail);
        break;
    default:
        snprintf(buf, cap, "no member fits");
        break;
    }
    return buf;
}

/* ---- constraints as text -------------------------------------------------- */

static int parse_id(uint8_t out[GOSSIP_ID_BYTES], const char *hex)
{
    if (strlen(hex) != 2 * GOSSIP_ID_BYTES)
        return NX_ERR_INVAL;
    return nx_hex_decode(out, GOSSIP_ID_BYTES, hex);
}

static int copy_part(char *out, size_t cap, const char *s, size_t len)
{
    if (len == 0 || len >= cap)
        return NX_ERR_INVAL;
    memcpy(out, s, len);
    out[len] = '\0';
    return NX_OK;
}

int place_needs_add(struct place_needs *needs, const char *text)
{
    if (strncmp(text, "node!=", 6) == 0) {
        if (needs->exclude_count >= PLACE_EXCLUDE_MAX)
            return NX_ERR_FULL;
        int rc = parse_id(needs->exclude[needs->exclude_count], text + 6);
        if (rc == NX_OK)
            needs->exclude_count++;
        return rc;
    }
    if (strncmp(text, "avoid=", 6) == 0) {
        if (needs->avoid_count >= PLACE_AVOID_MAX)
            return NX_ERR_FULL;
        int rc = parse_id(needs->avoid[needs->avoid_count], text + 6);
        if (rc == NX_OK)
            needs->avoid_count++;
        return rc;
    }
    if (needs->rule_count >= PLACE_RULES_MAX)
        return NX_ERR_FULL;
    struct place_label_rule r = {0};
    const char *key = text, *value = NULL;
    size_t key_len;
    const char *ne = strstr(text, "!=");
    const char *eq = strchr(text, '=');
    if (text[0] == '!') {
        r.op = PLACE_LABEL_ABSENT;
        key = text + 1;
        key_len = strlen(key);
    } else if (ne != NULL && ne < eq) {
        r.op = PLACE_LABEL_NE;
        key_len = (size_t)(ne - text);
        value = ne + 2;
    } else if (eq != NULL) {
        r.op = PLACE_LABEL_EQ;
        key_len = (size_t)(eq - text);
        value = eq + 1;
    } else {
        r.op = PLACE_LABEL_EXISTS;
        key_len = strlen(key);
    }
    if (copy_part(r.key, sizeof r.key, key, key_len) != NX_OK || strpbrk(r.key, "=!") != NULL)
        return NX_ERR_INVAL;
    if (value != NULL) {
        size_t vlen = strlen(value);
        if (vlen >= sizeof r.value || strchr(value, '=') != NULL)
            return NX_ERR_INVAL;
        memcpy(r.value, value, vlen + 1);
    }
    needs->rules[needs->rule_count++] = r;
    return NX_OK;
}
