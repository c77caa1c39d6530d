/* Unit tests of node/trust_file.c: the trusted-keys file format and its errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "node/trust.h"

#define KEY_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define KEY_C "0101010101010101010101010101010101010101010101010101010101010101"

static void key_from_hex(uint8_t pk[NODE_TRUST_PK_BYTES], const char *hex)
{
    assert_int_equal(nx_hex_decode(pk, NODE_TRUST_PK_BYTES, hex), NX_OK);
}

static int parse(struct node_trust_file *tf, const char *text, char *err, size_t err_len)
{
    return node_trust_file_parse(tf, "keys", text, strlen(text), err, err_len);
}

static void good_file_with_comments_and_blank_lines_loads_every_key(void **state)
{
    (void)state;
    struct node_trust_file *tf = NULL;
    assert_int_equal(node_trust_file_new(&tf), NX_OK);
    const char *text = "# cluster members\n"
                       "\n" KEY_A "\n"
                       "   " KEY_B "   # node b, trailing comment\r\n"
                       "\t\n"
                       "  # indented comment\n" KEY_A "\n"; /* duplicate is fine */
    char err[128] = "";
    assert_int_equal(parse(tf, text, err, sizeof err), NX_OK);
    assert_int_equal(node_trust_file_count(tf), 2);
    uint8_t a[32], b[32], c[32];
    key_from_hex(a, KEY_A);
    key_from_hex(b, KEY_B);
    key_from_hex(c, KEY_C);
    struct node_trust t = node_trust_file_iface(tf);
    assert_true(node_trust_check(&t, a));
    assert_true(node_trust_check(&t, b));
    assert_false(node_trust_check(&t, c));
    assert_false(node_trust_check(NULL, a));
    node_trust_file_free(tf);
}

static void malformed_line_is_an_error_naming_its_line_and_keeps_old_set(void **state)
{
    (void)state;
    struct node_trust_file *tf = NULL;
    assert_int_equal(node_trust_file_new(&tf), NX_OK);
    char err[128] = "";
    assert_int_equal(parse(tf, KEY_C "\n", err, sizeof err), NX_OK);

    const char *short_key = "# header\n" KEY_A "\n\n0011\n";
    assert_int_equal(parse(tf, short_key, err, sizeof err), NX_ERR_DECODE);
    assert_non_null(strstr(err, "keys:4:"));

    char bad_digit[] = KEY_A "\n" KEY_B "\n";
    bad_digit[65 + 10] = 'g';
    assert_int_equal(parse(tf, bad_digit, err, sizeof err), NX_ERR_DECODE);
    assert_non_null(strstr(err, "keys:2:"));

    /* Two keys on one line is not one key. */
    assert_int_equal(parse(tf, KEY_A " " KEY_B "\n", err, sizeof err), NX_ERR_DECODE);
    assert_non_null(strstr(err, "keys:1:"));

    /* A failed parse left the previous set in place. */
    assert_int_equal(node_trust_file_count(tf), 1);
    uint8_t c[32];
    key_from_hex(c, KEY_C);
    assert_true(node_trust_file_contains(tf, c));
    node_trust_file_free(tf);
}

static void too_long_line_and_too_many_keys_are_refused(void **state)
{
    (void)state;
    struct node_trust_file *tf = NULL;
    assert_int_equal(node_trust_file_new(&tf), NX_OK);
    char err[128] = "";
    size_t long_len = NODE_TRUST_FILE_MAX_LINE + 10;
    char *text = malloc(long_len + 2);
    assert_non_null(text);
    memset(text, '#', long_len);
    strcpy(text + long_len, "\n");
    assert_int_equal(parse(tf, text, err, sizeof err), NX_ERR_TOO_BIG);
    assert_non_null(strstr(err, "keys:1:"));
    free(text);

    size_t n = NODE_TRUST_FILE_MAX_KEYS + 1;
    text = malloc(n * 65 + 1);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++) {
        uint8_t pk[32] = {0};
        pk[0] = (uint8_t)i;
        pk[1] = (uint8_t)(i >> 8);
        nx_hex_encode(text + i * 65, pk, sizeof pk);
        text[i * 65 + 64] = '\n';
    }
    text[n * 65] = '\0';
    assert_int_equal(parse(tf, text, err, sizeof err), NX_ERR_TOO_BIG);
    assert_non_null(strstr(err, "more than"));
    text[(n - 1) * 65] = '\0'; /* exactly the limit is fine */
    assert_int_equal(parse(tf, text, err, sizeof err), NX_OK);
    assert_int_equal(node_trust_file_count(tf), NODE_TRUST_FILE_MAX_KEYS);
    uint8_t extra[32] = {0xee, 0xee, 0xee};
    assert_int_equal(node_trust_file_add(tf, extra), NX_ERR_FULL);
    free(text);
    node_trust_file_free(tf);
}

static void load_and_reload_follow_the_file(void **state)
{
    (void)state;
    char path[] = "/tmp/nx_trust_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# one key\n%s\n", KEY_A);
    fclose(f);

    struct node_trust_file *tf = NULL;
    assert_int_equal(node_trust_file_new(&tf), NX_OK);
    char err[256] = "";
    assert_int_equal(node_trust_file_reload(tf, err, sizeof err), NX_ERR_STATE);
    assert_int_equal(node_trust_file_load(tf, path, err, sizeof err), NX_OK);
    assert_int_equal(node_trust_file_count(tf), 1);

    f = fopen(path, "w");
    fprintf(f, "%s\n%s\n", KEY_A, KEY_B);
    fclose(f);
    assert_int_equal(node_trust_file_reload(tf, err, sizeof err), NX_OK);
    assert_int_equal(node_trust_file_count(tf), 2);

    f = fopen(path, "w");
    fprintf(f, "%s\nnot a key\n", KEY_A);
    fclose(f);
    assert_int_equal(node_trust_file_reload(tf, err, sizeof err), NX_ERR_DECODE);
    assert_non_null(strstr(err, ":2:"));
    assert_int_equal(node_trust_file_count(tf), 2); /* old set kept */

    unlink(path);
    assert_int_equal(node_trust_file_reload(tf, err, sizeof err), NX_ERR_IO);
    assert_int_equal(node_trust_file_count(tf), 2);
    node_trust_file_free(tf);
}

static void add_and_remove_change_membership(void **state)
{
    (void)state;
    struct node_trust_file *tf = NULL;
    assert_int_equal(node_trust_file_new(&tf), NX_OK);
    uint8_t a[32], b[32];
    key_from_hex(a, KEY_A);
    key_from_hex(b, KEY_B);
    assert_int_equal(node_trust_file_add(tf, b), NX_OK);
    assert_int_equal(node_trust_file_add(tf, a), NX_OK);
    assert_int_equal(node_trust_file_add(tf, a), NX_OK);
    assert_int_equal(node_trust_file_count(tf), 2);
    assert_int_equal(node_trust_file_remove(tf, a), NX_OK);
    assert_int_equal(node_trust_file_remove(tf, a), NX_ERR_NOT_FOUND);
    assert_false(node_trust_file_contains(tf, a));
    assert_true(node_trust_file_contains(tf, b));
    node_trust_file_free(tf);
}

/* Random text from an alphabet near the format: the parser never crashes and never half-loads. */
static void random_text_parses_or_fails_cleanly(void **state)
{
    (void)state;
    static const char alphabet[] = "0123456789abcdefABCDEF# \t\r\nxg";
    struct nx_rng rng;
    nx_rng_seed(&rng, 1);
    struct node_trust_file *tf = NULL;
    assert_int_equal(node_trust_file_new(&tf), NX_OK);
    char text[600];
    int ok = 0;
    for (int i = 0; i < 3000; i++) {
        bool keyish = nx_rng_below(&rng, 2) == 0;
        size_t len = keyish ? 65 * (size_t)nx_rng_below(&rng, sizeof text / 65 + 1)
                            : (size_t)nx_rng_below(&rng, sizeof text);
        for (size_t j = 0; j < len; j++) {
            /* Half the cases: mostly hex with newlines every 65 chars, so some parse. */
            if (keyish)
                text[j] = (j % 65 == 64) ? '\n' : "0123456789abcdef"[nx_rng_below(&rng, 16)];
            else
                text[j] = alphabet[nx_rng_below(&rng, sizeof alphabet - 1)];
        }
        if (keyish && len > 0 && nx_rng_below(&rng, 4) == 0)
            text[nx_rng_below(&rng, len)] = alphabet[nx_rng_below(&rng, sizeof alphabet - 1)];
        size_t before = node_trust_file_count(tf);
        char err[128] = "";
        int rc = node_trust_file_parse(tf, "r", text, len, err, sizeof err);
        if (rc == NX_OK) {
            ok++;
            assert_true(node_trust_file_count(tf) <= len / 64);
        } else {
            assert_int_equal(node_trust_file_count(tf), before);
            assert_true(strncmp(err, "r:", 2) == 0);
        }
    }
    assert_true(ok > 100);
    node_trust_file_free(tf);
}

int main(void)
{
    nx_log_set_level(NX_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_file_with_comments_and_blank_lines_loads_every_key),
        cmocka_unit_test(malformed_line_is_an_error_naming_its_line_and_keeps_old_set),
        cmocka_unit_test(too_long_line_and_too_many_keys_are_refused),
        cmocka_unit_test(load_and_reload_follow_the_file),
        cmocka_unit_test(add_and_remove_change_membership),
        cmocka_unit_test(random_text_parses_or_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
