/*
 * Unit tests of proto/replay.c, the per-sender replay windows, without any
 * signing: a random walk checked against a plain model, window jumps, and
 * LRU eviction with its timestamp floor.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proto/replay.h"

#define MODEL_SPAN 2000000 /* sequence numbers the random walk stays within */

static void key_of(uint8_t pk[NCAP_KEY_BYTES], uint32_t n)
{
    struct nx_rng rng;
    nx_rng_seed(&rng, n);
    for (int i = 0; i < NCAP_KEY_BYTES; i++)
        pk[i] = (uint8_t)nx_rng_next(&rng);
}

/* The model: accept iff above the top, or inside the window and never seen. */
static void window_matches_a_plain_model(void **state)
{
    (void)state;
    struct replay_table t;
    assert_int_equal(replay_table_init(&t, 4, 0), NX_OK);
    uint8_t pk[NCAP_KEY_BYTES];
    key_of(pk, 1);
    bool *seen = calloc(MODEL_SPAN, sizeof *seen);
    uint64_t top = 0;
    bool any = false;
    struct nx_rng rng;
    nx_rng_seed(&rng, 2024);
    int accepted = 0, rejected = 0;
    for (int step = 0; step < 50000; step++) {
        /* mostly near the top, sometimes a jump ahead, sometimes far behind */
        uint64_t r = nx_rng_below(&rng, 100), seq;
        if (!any || r < 2)
            seq = nx_rng_below(&rng, top + NCAP_REPLAY_WINDOW);
        else if (r < 3)
            seq = top + nx_rng_below(&rng, 2 * NCAP_REPLAY_WINDOW);
        else
            seq = top + 64 - nx_rng_below(&rng, NCAP_REPLAY_WINDOW + 200);
        if (seq >= MODEL_SPAN)
            continue;
        bool want = !any || seq > top || (top - seq < NCAP_REPLAY_WINDOW && !seen[seq]);
        bool got = replay_would_accept(&t, pk, seq, 1);
        if (got != want)
            fail_msg("step %d seq %llu top %llu: got %d want %d", step, (unsigned long long)seq,
                     (unsigned long long)top, got, want);
        if (got) {
            replay_commit(&t, pk, seq, 1);
            seen[seq] = true;
            if (!any || seq > top)
                top = seq;
            any = true;
            accepted++;
        } else {
            rejected++;
        }
        if (top > MODEL_SPAN - 3 * NCAP_REPLAY_WINDOW)
            break;
    }
    assert_true(accepted > 1000);
    assert_true(rejected > 1000);
    free(seen);
    replay_table_free(&t);
}

static void jump_far_ahead_clears_old_bits(void **state)
{
    (void)state;
    struct replay_table t;
    assert_int_equal(replay_table_init(&t, 1, 0), NX_OK);
    uint8_t pk[NCAP_KEY_BYTES];
    key_of(pk, 7);
    /* fill one whole window, then jump by exactly the ring size and by more */
    for (uint64_t s = 0; s < NCAP_REPLAY_WINDOW; s++)
        replay_commit(&t, pk, s, 1);
    uint64_t ring = 64 * REPLAY_WORDS;
    replay_commit(&t, pk, ring + 5, 1);
    for (uint64_t s = ring + 5 - NCAP_REPLAY_WINDOW + 1; s < ring + 5; s++) {
        bool seen_before = s < NCAP_REPLAY_WINDOW;
        assert_int_equal(replay_would_accept(&t, pk, s, 1), !seen_before);
    }
    replay_commit(&t, pk, 10 * ring + 1, 1);
    assert_true(replay_would_accept(&t, pk, 10 * ring, 1));
    assert_false(replay_would_accept(&t, pk, 10 * ring + 1, 1));
    replay_table_free(&t);
}

static void least_recently_used_sender_is_evicted_and_floor_rises(void **state)
{
    (void)state;
    struct replay_table t;
    assert_int_equal(replay_table_init(&t, 3, 0), NX_OK);
    uint8_t k[5][NCAP_KEY_BYTES];
    for (uint32_t i = 0; i < 5; i++)
        key_of(k[i], 100 + i);
    replay_commit(&t, k[0], 1, 10);
    replay_commit(&t, k[1], 1, 20);
    replay_commit(&t, k[2], 1, 30);
    replay_commit(&t, k[0], 2, 40); /* k[0] used again: k[1] is now the oldest */
    replay_commit(&t, k[3], 1, 50); /* evicts k[1] */
    assert_int_equal(t.evicted, 1);
    assert_int_equal(t.floor_ms, 20);
    /* k[0] is still known: its seq 2 is a replay whatever the timestamp */
    assert_false(replay_would_accept(&t, k[0], 2, 1000));
    /* k[1] is forgotten: only a timestamp above its last one gets in */
    assert_false(replay_would_accept(&t, k[1], 1, 20));
    assert_true(replay_would_accept(&t, k[1], 1, 21));
    /* many senders cycling through a small table keep it consistent */
    for (uint32_t round = 0; round < 200; round++) {
        uint32_t i = round % 5;
        uint64_t ts = 100 + round;
        assert_true(replay_would_accept(&t, k[i], 1000 + round, ts));
        replay_commit(&t, k[i], 1000 + round, ts);
    }
    assert_true(t.used == 3);
    replay_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(window_matches_a_plain_model),
        cmocka_unit_test(jump_far_ahead_clears_old_bits),
        cmocka_unit_test(least_recently_used_sender_is_evicted_and_floor_rises),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
