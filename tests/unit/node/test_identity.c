/* Unit tests of node/identity.c: key, token and cluster files, address parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include "node/node.h"

static char dir[64];
static char err[512];

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/nx-unit-id-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
}

static void key_is_created_then_loaded_unchanged(void **state)
{
    (void)state;
    struct node_identity a, b;
    bool created;
    assert_int_equal(node_identity_load_or_create(&a, dir, &created, err, sizeof err), NX_OK);
    assert_true(created);
    assert_int_equal(node_identity_load_or_create(&b, dir, &created, err, sizeof err), NX_OK);
    assert_false(created);
    assert_memory_equal(a.pk, b.pk, NODE_PK_BYTES);
    assert_memory_equal(a.sk, b.sk, NODE_SK_BYTES);
    struct stat st;
    char path[128];
    snprintf(path, sizeof path, "%s/node.key", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    node_identity_free(&a);
    node_identity_free(&b);
}

static void key_readable_by_others_is_refused(void **state)
{
    (void)state;
    struct node_identity a;
    bool created;
    assert_int_equal(node_identity_load_or_create(&a, dir, &created, err, sizeof err), NX_OK);
    node_identity_free(&a);
    char path[128];
    snprintf(path, sizeof path, "%s/node.key", dir);
    chmod(path, 0640);
    assert_int_equal(node_identity_load_or_create(&a, dir, &created, err, sizeof err), NX_ERR_PERM);
    assert_non_null(strstr(err, "readable by others"));
}

static void every_truncation_and_flipped_digit_is_corrupt(void **state)
{
    (void)state;
    struct node_identity a;
    bool created;
    assert_int_equal(node_identity_load_or_create(&a, dir, &created, err, sizeof err), NX_OK);
    node_identity_free(&a);
    char path[128], good[512];
    snprintf(path, sizeof path, "%s/node.key", dir);
    FILE *f = fopen(path, "r");
    size_t n = fread(good, 1, sizeof good - 1, f);
    fclose(f);
    good[n] = '\0';
    char bad[512];
    for (size_t cut = 0; cut + 1 < n; cut++) { /* the last byte is the newline */
        memcpy(bad, good, cut);
        bad[cut] = '\0';
        write_file("node.key", bad, 0600);
        assert_int_equal(node_identity_load_or_create(&a, dir, &created, err, sizeof err),
                         NX_ERR_CORRUPT);
    }
    for (size_t i = 0; i < n; i++) {
        if (good[i] == '\n')
            continue;
        memcpy(bad, good, n + 1);
        bad[i] = bad[i] == 'a' ? 'b' : 'a';
        write_file("node.key", bad, 0600);
        int rc = node_identity_load_or_create(&a, dir, &created, err, sizeof err);
        assert_int_equal(rc, NX_ERR_CORRUPT);
    }
}

static void token_created_once_and_validated(void **state)
{
    (void)state;
    char *t1 = NULL, *t2 = NULL;
    assert_int_equal(node_operator_token_read(&t1, dir, err, sizeof err), NX_ERR_NOT_FOUND);
    assert_int_equal(node_operator_token_load_or_create(&t1, dir, err, sizeof err), NX_OK);
    assert_int_equal(strlen(t1), NODE_TOKEN_LEN);
    assert_int_equal(node_operator_token_load_or_create(&t2, dir, err, sizeof err), NX_OK);
    assert_true(node_secret_equal(t1, t2));
    assert_false(node_secret_equal(t1, "nxo_0"));
    node_secret_free(t1);
    node_secret_free(t2);
    write_file("operator.token", "nxo_xyz\n", 0600);
    assert_int_equal(node_operator_token_read(&t1, dir, err, sizeof err), NX_ERR_CORRUPT);
}

static void cluster_id_round_trip(void **state)
{
    (void)state;
    uint8_t a[NODE_CLUSTER_ID_BYTES], b[NODE_CLUSTER_ID_BYTES];
    assert_int_equal(node_cluster_id_load(a, dir, false, err, sizeof err), NX_ERR_NOT_FOUND);
    assert_int_equal(node_cluster_id_load(a, dir, true, err, sizeof err), NX_OK);
    assert_int_equal(node_cluster_id_load(b, dir, false, err, sizeof err), NX_OK);
    assert_memory_equal(a, b, sizeof a);
    write_file("cluster.id", "12zz\n", 0600);
    assert_int_equal(node_cluster_id_load(b, dir, false, err, sizeof err), NX_ERR_CORRUPT);
}

static void addresses_split_or_fail(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(node_addr_split("127.0.0.1:7400", host, sizeof host, &port), NX_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7400);
    assert_int_equal(node_addr_split("[::1]:80", host, sizeof host, &port), NX_OK);
    assert_string_equal(host, "::1");
    const char *bad[] = {"",           ":80",      "host",    "host:",   "host:-1",
                         "host:65536", "host:80x", "[::1:80", "host: 80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(node_addr_split(bad[i], host, sizeof host, &port), NX_ERR_INVAL);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(key_is_created_then_loaded_unchanged, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(key_readable_by_others_is_refused, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(every_truncation_and_flipped_digit_is_corrupt, make_dir,
                                        remove_dir),
        cmocka_unit_test_setup_teardown(token_created_once_and_validated, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(cluster_id_round_trip, make_dir, remove_dir),
        cmocka_unit_test(addresses_split_or_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
