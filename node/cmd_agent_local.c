/*
 * cmd_agent_local.c - `nexus agent run-local BUNDLE_DIR`: loads the bundle's
 * manifest, runs the agent once in the sandbox (sandbox/sandbox.h) with the
 * manifest's resources, sends one request, and prints the reply and the
 * measured usage. No cluster, no ledger: a tool for agent authors and for
 * checking a node's sandbox.
 *
 * Kinds: stateless and stateful agents get one request ({"id":1,"input":..,
 * "context":..}); a long-running agent is started with no request and runs
 * until it exits or its timeout; its stdout is printed as is.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "node/cli.h"
#include "node/cmd_agent_local.h"
#include "sandbox/sandbox.h"

struct opts {
    const char *bundle;
    const char *input;   /* JSON text, "-" for stdin, NULL = null */
    const char *context; /* JSON text, NULL = null */
    uint64_t timeout_ms; /* 0 = the manifest's */
    bool allow_network;
    bool json;
};

static const struct cli_opt run_local_opts[] = {
    {"input", "JSON|-", "null", NULL, "request input as JSON text, or - to read it from stdin",
     false},
    {"context", "JSON", "null", NULL, "session context passed to a stateful agent", false},
    {"timeout", "MS", "the manifest's timeout_ms", NULL, "wall-clock limit in milliseconds", false},
    {"allow-network", NULL, NULL, NULL,
     "grant the network if the manifest asks for it (otherwise the agent has none)", false},
    {"json", NULL, NULL, NULL, "print one JSON object {output|error, context, usage}", false},
};

const struct cli_cmd cmd_agent_run_local_spec = {
    "agent run-local", "BUNDLE_DIR",
    "run a bundle once in the sandbox here, no cluster (exit 0 answered, 1 agent failed, 2 "
    "usage)",
    run_local_opts, NX_ARRAY_LEN(run_local_opts)};

/* Fills o with strings borrowed from vals: free vals only after o's last use. */
static int parse_opts(int argc, char **argv, struct opts *o, struct cli_values *vals_out)
{
    const struct cli_cmd *spec = &cmd_agent_run_local_spec;
    struct cli_values vals;
    memset(o, 0, sizeof *o);
    int rc = cli_parse(spec, argc, argv, &vals);
    *vals_out = vals;
    if (rc != CLI_OK)
        return rc == CLI_HELP ? -1 : CMD_AGENT_USAGE;
    unsigned long long timeout_ms = 0;
    rc = 0;
    if (strcmp(cli_get(spec, &vals, "timeout"), "the manifest's timeout_ms") != 0 &&
        (!cli_get_u64(spec, &vals, "timeout", SBX_TIMEOUT_MAX_MS, &timeout_ms) ||
         timeout_ms == 0)) {
        if (timeout_ms == 0)
            cli_error("agent run-local: --timeout must be 1 to %llu ms",
                      (unsigned long long)SBX_TIMEOUT_MAX_MS);
        rc = CMD_AGENT_USAGE;
    } else if (vals.first_positional != argc - 1) {
        cli_error("agent run-local: expected exactly one BUNDLE_DIR; see 'nexus agent run-local "
                  "--help'");
        rc = CMD_AGENT_USAGE;
    }
    if (rc == 0) {
        const char *input = cli_get(spec, &vals, "input");
        const char *context = cli_get(spec, &vals, "context");
        o->input = strcmp(input, "null") == 0 ? NULL : input;
        o->context = strcmp(context, "null") == 0 ? NULL : context;
        o->timeout_ms = timeout_ms;
        o->allow_network = cli_flag(spec, &vals, "allow-network");
        o->json = cli_flag(spec, &vals, "json");
        o->bundle = argv[vals.first_positional];
    }
    return rc;
}

/* Parses --input/--context text (or stdin for "-"); NULL text = JSON null. */
static json_t *load_json(const char *text, const char *what)
{
    if (!text)
        return json_null();
    json_error_t jerr;
    json_t *v;
    if (strcmp(text, "-") == 0)
        v = json_loadf(stdin, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &jerr);
    else
        v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fprintf(stderr, "nexus: agent run-local: %s: not valid JSON: %s\n", what, jerr.text);
    return v;
}

static void print_json(FILE *f, json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fprintf(f, "%s\n", s ? s : "null");
    free(s);
}

static int report(const struct opts *o, const struct sbx_reply *reply, const struct sbx_usage *u,
                  const char *failure, const char *raw_output)
{
    if (o->json) {
        json_t *all = json_object();
        if (failure)
            json_object_set_new(all, "error", json_string(failure));
        else if (raw_output)
            json_object_set_new(all, "output", json_string(raw_output));
        else
            json_object_set(all, "output", reply->output);
        if (reply->context)
            json_object_set(all, "context", reply->context);
        json_object_set_new(all, "usage", sbx_usage_to_json(u));
        print_json(stdout, all);
        json_decref(all);
    } else {
        if (failure)
            printf("error: %s\n", failure);
        else if (raw_output)
            fputs(raw_output, stdout);
        else
            print_json(stdout, reply->output);
        if (reply->context) {
            printf("context: ");
            print_json(stdout, reply->context);
        }
        char buf[1024];
        sbx_usage_format(u, buf, sizeof buf);
        printf("--- usage\n%s", buf);
    }
    return failure ? CMD_AGENT_FAILED : CMD_AGENT_OK;
}

static int run_long(const struct opts *o, const struct sbx_config *cfg)
{
    struct sbx_run *run;
    char err[SBX_ERR_MAX] = "";
    struct sbx_reply none = {0};
    struct sbx_usage u = {0};
    if (sbx_run_start(cfg, &run, err, sizeof err) < 0)
        return report(o, &none, &u, err, NULL);
    sbx_run_close_stdin(run);
    int rc = sbx_run_wait(run, &u);
    size_t len;
    const char *out = sbx_run_output(run, &len);
    char *copy = strndup(out, len);
    const char *failure = rc < 0        ? "wait failed"
                          : u.timed_out ? NULL /* a long-running agent ends at its timeout */
                          : (u.term_signal || u.exit_code) ? "agent exited with failure"
                                                           : NULL;
    rc = report(o, &none, &u, failure, copy ? copy : "");
    free(copy);
    sbx_run_free(run);
    return rc;
}

static int run_local(struct opts o);

int cmd_agent_run_local(int argc, char **argv)
{
    struct opts o;
    struct cli_values vals;
    int rc = parse_opts(argc, argv, &o, &vals);
    if (rc == 0)
        rc = run_local(o);
    cli_values_free(&vals);
    return rc < 0 ? CMD_AGENT_OK : rc;
}

static int run_local(struct opts o)
{
    int rc;
    struct sbx_manifest m;
    char err[SBX_ERR_MAX] = "";
    if (sbx_manifest_load(o.bundle, &m, err, sizeof err) < 0) {
        fprintf(stderr, "nexus: agent run-local: %s\n", err);
        return CMD_AGENT_USAGE;
    }
    json_t *input = load_json(o.input, "--input");
    json_t *context = load_json(o.context, "--context");
    if (!input || !context) {
        rc = CMD_AGENT_USAGE;
        goto out;
    }
    struct sbx_config cfg;
    sbx_config_init(&cfg);
    cfg.bundle_dir = o.bundle;
    sbx_config_from_manifest(&cfg, &m, o.allow_network);
    if (o.timeout_ms)
        cfg.limits.timeout_ms = o.timeout_ms;
    if (m.network && !o.allow_network && !o.json)
        fprintf(stderr, "nexus: agent run-local: the manifest asks for the network; not granted "
                        "(--allow-network)\n");
    if (m.kind == SBX_KIND_LONG_RUNNING) {
        rc = run_long(&o, &cfg);
        goto out;
    }
    struct sbx_reply reply;
    struct sbx_usage u;
    rc = sbx_run_once(&cfg, input, json_is_null(context) ? NULL : context, &reply, &u, err,
                      sizeof err);
    if (rc == NX_ERR_INVAL || rc == NX_ERR_PERM) {
        fprintf(stderr, "nexus: agent run-local: %s\n", err);
        rc = CMD_AGENT_USAGE;
    } else {
        const char *failure = rc < 0 ? err : reply.error;
        rc = report(&o, &reply, &u, failure, NULL);
    }
    sbx_reply_clear(&reply);
out:
    json_decref(input);
    json_decref(context);
    sbx_manifest_free(&m);
    return rc;
}
