/*
 * cmd_session.c - `nexus session open|send|show|close`: stateful agent
 * sessions (/v1/sessions, session.h). The context lives in the cluster, not
 * in this client: any member can take the next call.
 */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "client.h"
#include "commands.h"

static const struct cli_opt session_opts[] = {
    CLI_CLIENT_OPTS,
    {"input", "JSON|-", "null", NULL, "send: the call's input as JSON, or - for stdin", false},
    {"account", "ACCOUNT", NULL, NULL, "open: the ledger account charged for every call", false},
};

const struct cli_cmd cmd_session_spec = {
    "session", "open NAME[@VERSION] | send ID --input JSON | show ID | close ID",
    "stateful agent sessions: the context is checkpointed in the cluster after every call, so "
    "a call resumes on another member when the last one's node is gone",
    session_opts, NX_ARRAY_LEN(session_opts)};

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fputc('\n', stdout);
}

/* Posts or gets path; prints the answer (or the error); returns an exit code. */
static int call(struct client *c, const char *method, const char *path, json_t *body,
                void (*print)(json_t *))
{
    json_t *r = NULL;
    long status = client_call(c, method, path, body, &r);
    int code = status >= 200 && status < 300 ? 0 : 1;
    if (code == 0 && json_object_get(r, "error"))
        code = 1; /* the agent answered with an error */
    if (status > 0 && (c->json || code == 0))
        c->json ? print_json(r) : print(r);
    else if (status > 0)
        client_print_error(status, r);
    json_decref(r);
    return code;
}

static void print_opened(json_t *r)
{
    printf("%s\n", json_string_value(json_object_get(r, "session")));
    fprintf(stderr, "session of %s; send calls with 'nexus session send %s --input JSON'\n",
            json_string_value(json_object_get(r, "agent")),
            json_string_value(json_object_get(r, "session")));
}

static void print_sent(json_t *r)
{
    cmd_agent_print_run(r);
    printf("--- session %s, call %lld\n", json_string_value(json_object_get(r, "session")),
           (long long)json_integer_value(json_object_get(r, "call")));
}

static void print_record(json_t *r)
{
    printf("session %s: %s, %lld calls, last on %.16s\ncontext: ",
           json_string_value(json_object_get(r, "session")),
           json_string_value(json_object_get(r, "agent")),
           (long long)json_integer_value(json_object_get(r, "calls")),
           json_string_value(json_object_get(r, "node")));
    print_json(json_object_get(r, "context"));
}

static void print_closed(json_t *r)
{
    printf("closed %s after %lld calls\n", json_string_value(json_object_get(r, "closed")),
           (long long)json_integer_value(json_object_get(r, "calls")));
}

static int run(struct client *c, const struct cli_values *vals, const char *sub, const char *arg)
{
    char path[128];
    if (strcmp(sub, "open") == 0) {
        const char *account = cli_get(&cmd_session_spec, vals, "account");
        json_t *body = json_pack("{s:s}", "agent", arg);
        if (account)
            json_object_set_new(body, "account", json_string(account));
        int code = call(c, "POST", "/v1/sessions", body, print_opened);
        json_decref(body);
        return code;
    }
    snprintf(path, sizeof path, "/v1/sessions/%.64s", arg);
    if (strcmp(sub, "send") == 0) {
        json_t *input = cmd_agent_load_input(cli_get(&cmd_session_spec, vals, "input"));
        if (input == NULL)
            return 2;
        json_t *body = json_pack("{s:o}", "input", input);
        int code = call(c, "POST", path, body, print_sent);
        json_decref(body);
        return code;
    }
    if (strcmp(sub, "show") == 0)
        return call(c, "GET", path, NULL, print_record);
    return call(c, "DELETE", path, NULL, print_closed);
}

int cmd_session(int argc, char **argv)
{
    struct cli_values vals;
    int rc = cli_parse(&cmd_session_spec, argc, argv, &vals);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? 0 : 2;
    int code = 2;
    int first = vals.first_positional;
    const char *sub = first < argc ? argv[first] : "";
    bool known = strcmp(sub, "open") == 0 || strcmp(sub, "send") == 0 || strcmp(sub, "show") == 0 ||
                 strcmp(sub, "close") == 0;
    if (!known || argc - first != 2) {
        cli_error("usage: nexus session %s", cmd_session_spec.args);
        goto out;
    }
    struct client c;
    code = 1;
    if (client_init(&c, &cmd_session_spec, &vals)) {
        code = run(&c, &vals, sub, argv[first + 1]);
        client_free(&c);
    }
out:
    cli_values_free(&vals);
    return code;
}
