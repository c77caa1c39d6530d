/*
 * client.c - libcurl-based client for the node API.
 *
 * Why libcurl: the standard, well-kept HTTP client library on every Linux;
 * we never parse HTTP ourselves.
 */
#include "client.h"
#include "node.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct buffer {
    char *data;
    size_t len;
    bool overflow;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct buffer *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n > CLIENT_MAX_REPLY_BYTES) {
        b->overflow = true;
        return 0;
    }
    char *grown = realloc(b->data, b->len + n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + b->len, ptr, n);
    b->data = grown;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

bool client_init(struct client *c, const struct cli_cmd *cmd, const struct cli_values *vals)
{
    memset(c, 0, sizeof *c);
    snprintf(c->api, sizeof c->api, "%s", cli_get(cmd, vals, "api"));
    c->json = cli_flag(cmd, vals, "json");
    const char *token = cli_get(cmd, vals, "token");
    const char *dir = cli_get(cmd, vals, "data-dir");
    char err[512];
    if (token) {
        size_t n = strlen(token) + 1;
        c->token = sodium_malloc(n);
        if (c->token == NULL) {
            cli_error("out of memory");
            return false;
        }
        memcpy(c->token, token, n);
    } else if (dir) {
        int rc = node_operator_token_read(&c->token, dir, err, sizeof err);
        if (rc == NX_ERR_NOT_FOUND) {
            cli_error("no operator token in %s (is it a node's data directory?)", dir);
            return false;
        }
        if (rc != NX_OK) {
            cli_error("%s", err);
            return false;
        }
    }
    return true;
}

void client_free(struct client *c)
{
    node_secret_free(c->token);
    c->token = NULL;
}

long client_request(struct client *c, const char *method, const char *path, const char *body,
                    size_t body_len, const char *content_type, json_t **reply)
{
    *reply = NULL;
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        cli_error("cannot initialise libcurl");
        return -1;
    }
    char url[1024];
    snprintf(url, sizeof url, "http://%s%s", c->api, path);
    struct curl_slist *headers = NULL;
    char auth[256];
    if (c->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        headers = curl_slist_append(headers, auth);
        sodium_memzero(auth, sizeof auth);
    }
    char ctype[128];
    if (body) {
        snprintf(ctype, sizeof ctype, "Content-Type: %s", content_type);
        headers = curl_slist_append(headers, ctype);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    struct buffer buf = {0};
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    CURLcode res = curl_easy_perform(curl);
    long status = -1;
    if (res != CURLE_OK) {
        cli_error("cannot reach node at %s: %s", c->api,
                  buf.overflow ? "reply too large"
                               : (curl_err[0] ? curl_err : curl_easy_strerror(res)));
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        json_error_t jerr;
        *reply = json_loadb(buf.data ? buf.data : "", buf.len, 0, &jerr);
        if (*reply == NULL) {
            cli_error("node at %s answered HTTP %ld with a body that is not JSON", c->api, status);
            status = -1;
        }
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    free(buf.data);
    return status;
}

long client_call(struct client *c, const char *method, const char *path, json_t *body,
                 json_t **reply)
{
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && payload == NULL) {
        cli_error("out of memory");
        *reply = NULL;
        return -1;
    }
    long status = client_request(c, method, path, payload, payload ? strlen(payload) : 0,
                                 "application/json", reply);
    free(payload);
    return status;
}

void client_print_error(long status, json_t *reply)
{
    const char *msg = json_string_value(json_object_get(reply, "error"));
    cli_error("%s (HTTP %ld)", msg ? msg : "request failed", status);
}

int client_simple_command(const struct cli_cmd *spec, int argc, char **argv, const char *method,
                          const char *path, void (*print_text)(json_t *))
{
    struct cli_values vals;
    int rc = cli_parse(spec, argc, argv, &vals);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? 0 : 2;
    int exit_code = 1;
    struct client c;
    if (argc > vals.first_positional) {
        cli_error("%s: unexpected argument '%s'", spec->name, argv[vals.first_positional]);
        exit_code = 2;
        goto out_vals;
    }
    if (!client_init(&c, spec, &vals))
        goto out_vals;
    json_t *reply;
    long status = client_call(&c, method, path, NULL, &reply);
    if (status >= 200 && status < 300) {
        if (c.json) {
            json_dumpf(reply, stdout, JSON_INDENT(2));
            putchar('\n');
        } else {
            print_text(reply);
        }
        exit_code = 0;
    } else if (status > 0) {
        client_print_error(status, reply);
    }
    json_decref(reply);
    client_free(&c);
out_vals:
    cli_values_free(&vals);
    return exit_code;
}

int client_cluster_id(struct client *c, uint8_t cid[NODE_CLUSTER_ID_BYTES])
{
    json_t *g = NULL;
    long status = client_call(c, "GET", "/v1/ledger/genesis?stale", NULL, &g);
    if (status < 200 || status >= 300) {
        if (status > 0)
            client_print_error(status, g);
        json_decref(g);
        return 1;
    }
    const char *hex = json_string_value(json_object_get(g, "cluster_id"));
    int rc = hex && strlen(hex) == 2 * NODE_CLUSTER_ID_BYTES &&
                     nx_hex_decode(cid, NODE_CLUSTER_ID_BYTES, hex) == NX_OK
                 ? 0
                 : 1;
    if (rc)
        cli_error("the node's ledger has no genesis yet (no cluster id)");
    json_decref(g);
    return rc;
}
