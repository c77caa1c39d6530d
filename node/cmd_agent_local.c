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
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nexus agent run-local BUNDLE_DIR [options]\n"
            "\n"
            "Runs the agent bundle in BUNDLE_DIR (manifest.json plus files) once in the\n"
            "sandbox on this machine, without a cluster, then prints its output and usage.\n"
            "\n"
            "options:\n"
            "  --input JSON|-     request input as JSON text, or - to read it from stdin\n"
            "                     (default: null)\n"
            "  --context JSON     session context passed to a stateful agent (default: null)\n"
            "  --timeout MS       wall-clock limit in milliseconds (default: the manifest's\n"
            "                     timeout_ms, itself %llu when absent)\n"
            "  --allow-network    grant the network if the manifest asks for it\n"
            "                     (default: not granted; the agent gets an empty network)\n"
            "  --json             print one JSON object {output|error, context, usage}\n"
            "                     (default: human-readable)\n"
            "  -h, --help         this text\n"
            "\n"
            "exit codes: 0 the agent answered, 1 the agent failed (error reply, timeout,\n"
            "crash, protocol error), 2 usage error (options, bundle, manifest).\n",
            (unsigned long long)SBX_DEFAULT_TIMEOUT_MS);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {{"input", required_argument, NULL, 'i'},
                                             {"context", required_argument, NULL, 'c'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"allow-network", no_argument, NULL, 'n'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            o->input = optarg;
            break;
        case 'c':
            o->context = optarg;
            break;
        case 't': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || *end || v == 0 || v > SBX_TIMEOUT_MAX_MS || optarg[0] == '-') {
                fprintf(stderr, "run-local: --timeout: must be 1 to %llu ms\n",
                        (unsigned long long)SBX_TIMEOUT_MAX_MS);
                return CMD_AGENT_USAGE;
            }
            o->timeout_ms = v;
            break;
        }
        case 'n':
            o->allow_network = true;
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            fprintf(stderr, "run-local: unknown or incomplete option %s\n", argv[optind - 1]);
            usage(stderr);
            return CMD_AGENT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "run-local: expected exactly one BUNDLE_DIR\n");
        usage(stderr);
        return CMD_AGENT_USAGE;
    }
    o->bundle = argv[optind];
    return 0;
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
        fprintf(stderr, "run-local: %s: not valid JSON: %s\n", what, jerr.text);
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

int cmd_agent_run_local(int argc, char **argv)
{
    struct opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? CMD_AGENT_OK : rc;
    struct sbx_manifest m;
    char err[SBX_ERR_MAX] = "";
    if (sbx_manifest_load(o.bundle, &m, err, sizeof err) < 0) {
        fprintf(stderr, "run-local: %s\n", err);
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
        fprintf(stderr, "run-local: the manifest asks for the network; not granted "
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
        fprintf(stderr, "run-local: %s\n", err);
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
