/*
 * cmd_init.c - `nexus init`: prepare a data directory without starting the
 * node: create the key pair and operator token, optionally pin a cluster id,
 * and print the node id. Used by scripts that must know a node's id before
 * it runs (the demo, multi-node tests); `nexus node` does the same on first
 * start.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "node.h"

static const struct cli_opt init_opts[] = {
    {"data-dir", "DIR", "/var/lib/nexus", NULL, "the data directory to prepare", false},
    {"cluster-id", "HEX", NULL, NULL, "pin this node to an existing cluster id (32 hex chars)",
     false},
    {"json", NULL, NULL, NULL, "print JSON instead of text", false},
};

const struct cli_cmd cmd_init_spec = {"init", "",
                                      "create a data directory's node key and operator token",
                                      init_opts, NX_ARRAY_LEN(init_opts)};

static void print_json(json_t *obj)
{
    json_dumpf(obj, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(obj);
}

int cmd_init(int argc, char **argv)
{
    struct cli_values vals;
    int rc = cli_parse(&cmd_init_spec, argc, argv, &vals);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? 0 : 2;
    int exit_code = 1;
    char err[512];
    const char *dir = cli_get(&cmd_init_spec, &vals, "data-dir");
    const char *cluster_hex = cli_get(&cmd_init_spec, &vals, "cluster-id");
    uint8_t cluster[NODE_CLUSTER_ID_BYTES];
    if (cluster_hex && nx_hex_decode(cluster, sizeof cluster, cluster_hex) != NX_OK) {
        cli_error("init: --cluster-id must be 32 hex characters, not '%s'", cluster_hex);
        exit_code = 2;
        goto out;
    }
    struct node_identity id;
    bool created;
    char *token = NULL;
    if (node_data_dir_prepare(dir, err, sizeof err) != NX_OK ||
        node_identity_load_or_create(&id, dir, &created, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        goto out;
    }
    if (node_operator_token_load_or_create(&token, dir, err, sizeof err) != NX_OK ||
        (cluster_hex && node_cluster_id_store(cluster, dir, err, sizeof err) != NX_OK)) {
        cli_error("%s", err);
        goto out_id;
    }
    if (cli_flag(&cmd_init_spec, &vals, "json"))
        print_json(
            json_pack("{s:s,s:s,s:b}", "node_id", id.id_hex, "data_dir", dir, "created", created));
    else
        printf("node id: %s\n", id.id_hex);
    exit_code = 0;
    node_secret_free(token);
out_id:
    node_identity_free(&id);
out:
    cli_values_free(&vals);
    return exit_code;
}
