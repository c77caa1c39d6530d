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

struct buf {
    char *data;
    size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct buf *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n > CLIENT_MAX_REPLY_BYTES)
        return 0;
    char *g = realloc(b->data, b->len + n + 1);
    if (g == NULL)
        return 0;
    memcpy(g + b->len, ptr, n);
    b->data = g;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* One request with a raw body (may be NULL); returns the HTTP status or -1. */
static long kv_call(struct client *c, const char *method, const char *key, bool stale,
                    const char *body, json_t **reply)
{
    *reply = NULL;
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        cli_error("cannot initialise libcurl");
        return -1;
    }
    char *esc = curl_easy_escape(curl, key, 0);
    char url[1024];
    snprintf(url, sizeof url, "http://%s/v1/kv/%s%s", c->api, esc ? esc : key,
             stale ? "?stale" : "");
    curl_free(esc);
    struct curl_slist *headers = NULL;
    char auth[256];
    if (c->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        headers = curl_slist_append(headers, auth);
    }
    struct buf b = {0};
    if (body) {
        headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    long status = -1;
    CURLcode res = curl_easy_perform(curl);
    if (res != CURLE_OK) {
        cli_error("cannot reach %s: %s", c->api, curl_err[0] ? curl_err : curl_easy_strerror(res));
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        *reply = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
        if (*reply == NULL) {
            cli_error("%s answered HTTP %ld without JSON", c->api, status);
            status = -1;
        }
    }
    free(b.data);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return status;
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
