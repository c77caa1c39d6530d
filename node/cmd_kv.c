/*
 * cmd_kv.c - `nexus kv put KEY VALUE`, `nexus kv get KEY [--stale]`,
 * `nexus kv delete KEY`: a client of the replicated key-value store
 * (PUT/GET/DELETE /v1/kv/KEY).
 *
 * PUT sends the value as the raw request body, so this file makes its own
 * libcurl request instead of client_call (which sends JSON bodies); the reply
 * is JSON either way. Options may come before or after the positional
 * arguments.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "client.h"
#include "commands.h"

#define KV_CLI_MAX_ARGS 64

static const struct cli_opt kv_opts[] = {
    CLI_CLIENT_OPTS,
    {"stale", NULL, NULL, NULL,
     "get: read the node's local copy (may lag) instead of a "
     "linearizable read through the leader",
     false},
};

const struct cli_cmd cmd_kv_spec = {"kv", "put KEY VALUE | get KEY | delete KEY",
                                    "read and write the replicated key-value store", kv_opts,
                                    NX_ARRAY_LEN(kv_opts)};

/* One request with a raw body (may be NULL); returns the HTTP status or -1. */
static long kv_call(struct client *c, const char *method, const char *key, bool stale,
                    const char *body, json_t **reply)
{
    *reply = NULL;
    char *esc = curl_easy_escape(NULL, key, 0);
    if (esc == NULL) {
        cli_error("out of memory");
        return -1;
    }
    char path[1024];
    snprintf(path, sizeof path, "/v1/kv/%s%s", esc, stale ? "?stale" : "");
    curl_free(esc);
    return client_request(c, method, path, body, body ? strlen(body) : 0,
                          "application/octet-stream", reply);
}

static bool takes_value(const char *arg)
{
    if (strchr(arg, '='))
        return false;
    for (size_t i = 0; i < NX_ARRAY_LEN(kv_opts); i++)
        if (kv_opts[i].arg && strcmp(arg + 2, kv_opts[i].name) == 0)
            return true;
    return false;
}

static void print_reply(const struct client *c, json_t *reply, const char *sub)
{
    if (c->json) {
        json_dumpf(reply, stdout, JSON_INDENT(2));
        putchar('\n');
    } else if (strcmp(sub, "get") == 0) {
        const char *v = json_string_value(json_object_get(reply, "value"));
        printf("%s\n", v ? v : json_string_value(json_object_get(reply, "value_hex")));
    } else {
        printf("ok (index %lld)\n", (long long)json_integer_value(json_object_get(reply, "index")));
    }
}

int cmd_kv(int argc, char **argv)
{
    /* Reorder: options first (cli_parse stops at the first positional). */
    char *opts[KV_CLI_MAX_ARGS], *pos[KV_CLI_MAX_ARGS];
    int n_opts = 1, n_pos = 0;
    if (argc > KV_CLI_MAX_ARGS) {
        cli_error("kv: too many arguments");
        return 2;
    }
    opts[0] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            opts[n_opts++] = argv[i];
            if (argv[i][1] == '-' && takes_value(argv[i]) && i + 1 < argc)
                opts[n_opts++] = argv[++i];
        } else {
            pos[n_pos++] = argv[i];
        }
    }
    struct cli_values vals;
    int rc = cli_parse(&cmd_kv_spec, n_opts, opts, &vals);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? 0 : 2;
    int exit_code = 2;
    const char *sub = n_pos > 0 ? pos[0] : "";
    int want = strcmp(sub, "put") == 0                                   ? 3
               : (strcmp(sub, "get") == 0 || strcmp(sub, "delete") == 0) ? 2
                                                                         : 0;
    if (want == 0 || n_pos != want) {
        cli_error("kv: usage: nexus kv put KEY VALUE | get KEY [--stale] | delete KEY");
        goto out_vals;
    }
    exit_code = 1;
    struct client c;
    if (!client_init(&c, &cmd_kv_spec, &vals))
        goto out_vals;
    const char *method = strcmp(sub, "put") == 0   ? "PUT"
                         : strcmp(sub, "get") == 0 ? "GET"
                                                   : "DELETE";
    json_t *reply = NULL;
    long status = kv_call(&c, method, pos[1], cli_flag(&cmd_kv_spec, &vals, "stale"),
                          want == 3 ? pos[2] : NULL, &reply);
    if (status >= 200 && status < 300) {
        print_reply(&c, reply, sub);
        exit_code = 0;
    } else if (status > 0) {
        const char *leader = json_string_value(json_object_get(reply, "leader"));
        client_print_error(status, reply);
        if (leader && leader[0])
            fprintf(stderr, "nexus: the leader is %s\n", leader);
    }
    json_decref(reply);
    client_free(&c);
out_vals:
    cli_values_free(&vals);
    return exit_code;
}
