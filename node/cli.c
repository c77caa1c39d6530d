/*
 * cli.c - option parsing and help text for `nexus` commands, from one table.
 */
#include "cli.h"

#include "base/base.h"

#include <errno.h>
#include <jansson.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define OPT_BASE 256 /* getopt values of table options start here */

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nexus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_print_help(const struct cli_cmd *cmd, FILE *out)
{
    fprintf(out, "Usage: nexus %s [OPTIONS]%s%s\n\n%s\n\nOptions:\n", cmd->name,
            cmd->args[0] ? " " : "", cmd->args, cmd->summary);
    for (int i = 0; i < cmd->n_opts; i++) {
        const struct cli_opt *o = &cmd->opts[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-24s %s", left, o->help);
        if (o->def)
            fprintf(out, " (default: %s)", o->def);
        if (o->env)
            fprintf(out, " [env %s]", o->env);
        if (o->repeat)
            fprintf(out, " (repeatable)");
        fputc('\n', out);
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this help");
}

static int append_value(struct cli_values *vals, int i, const char *value)
{
    if (vals->v[i] == NULL || vals->owned[i] == NULL) {
        vals->owned[i] = strdup(value);
    } else {
        size_t a = strlen(vals->owned[i]), b = strlen(value);
        char *joined = realloc(vals->owned[i], a + b + 2);
        if (joined == NULL)
            return -1;
        joined[a] = '\n';
        memcpy(joined + a + 1, value, b + 1);
        vals->owned[i] = joined;
    }
    if (vals->owned[i] == NULL)
        return -1;
    vals->v[i] = vals->owned[i];
    return 0;
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct cli_values *out)
{
    NX_ASSERT(cmd->n_opts < CLI_MAX_OPTS);
    memset(out, 0, sizeof *out);
    struct option longopts[CLI_MAX_OPTS + 1];
    for (int i = 0; i < cmd->n_opts; i++) {
        const struct cli_opt *o = &cmd->opts[i];
        /* val = OPT_BASE + index: 0 is what getopt reports for an unknown long option. */
        longopts[i] =
            (struct option){o->name, o->arg ? required_argument : no_argument, NULL, OPT_BASE + i};
        const char *env = o->env ? getenv(o->env) : NULL;
        out->v[i] = (env && env[0]) ? env : o->def;
    }
    longopts[cmd->n_opts] = (struct option){"help", no_argument, NULL, 'h'};
    memset(&longopts[cmd->n_opts + 1], 0, sizeof longopts[0]);
    bool seen[CLI_MAX_OPTS] = {false};

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            cli_print_help(cmd, stdout);
            return CLI_HELP;
        }
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            int idx = optopt - OPT_BASE;
            if (idx >= 0 && idx < cmd->n_opts && cmd->opts[idx].arg)
                cli_error("%s: option --%s needs a value (%s); see 'nexus %s --help'", cmd->name,
                          cmd->opts[idx].name, cmd->opts[idx].arg, cmd->name);
            else
                cli_error("%s: unknown option '%s'; see 'nexus %s --help'", cmd->name, bad,
                          cmd->name);
            return CLI_ERROR;
        }
        c -= OPT_BASE;
        const struct cli_opt *o = &cmd->opts[c];
        if (seen[c] && !o->repeat) {
            cli_error("%s: option --%s given twice", cmd->name, o->name);
            return CLI_ERROR;
        }
        if (!seen[c])
            out->v[c] = NULL; /* drop the default before the first given value */
        seen[c] = true;
        out->given[c] = true;
        if (append_value(out, c, o->arg ? optarg : "1") != 0) {
            cli_error("out of memory");
            return CLI_ERROR;
        }
    }
    out->first_positional = optind;
    return CLI_OK;
}

void cli_values_free(struct cli_values *vals)
{
    for (int i = 0; i < CLI_MAX_OPTS; i++)
        free(vals->owned[i]);
    memset(vals, 0, sizeof *vals);
}

static int find_opt(const struct cli_cmd *cmd, const char *name)
{
    for (int i = 0; i < cmd->n_opts; i++)
        if (strcmp(cmd->opts[i].name, name) == 0)
            return i;
    NX_ASSERT(!"option name not in the command's table");
    return -1;
}

const char *cli_get(const struct cli_cmd *cmd, const struct cli_values *vals, const char *name)
{
    return vals->v[find_opt(cmd, name)];
}

bool cli_flag(const struct cli_cmd *cmd, const struct cli_values *vals, const char *name)
{
    const char *v = cli_get(cmd, vals, name);
    return v != NULL && strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
}

bool cli_get_u64(const struct cli_cmd *cmd, const struct cli_values *vals, const char *name,
                 unsigned long long max, unsigned long long *out)
{
    const char *v = cli_get(cmd, vals, name);
    if (v == NULL)
        return true;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || errno || *end || x > max) {
        cli_error("%s: --%s must be a whole number from 0 to %llu, not '%s'", cmd->name, name, max,
                  v);
        return false;
    }
    *out = x;
    return true;
}

static bool takes_value(const struct cli_cmd *cmd, const char *arg)
{
    if (strchr(arg, '='))
        return false;
    for (int i = 0; i < cmd->n_opts; i++)
        if (cmd->opts[i].arg && strcmp(arg + 2, cmd->opts[i].name) == 0)
            return true;
    return false;
}

int cli_parse_anywhere(const struct cli_cmd *cmd, int argc, char **argv, struct cli_values *out,
                       char **pos, int max_pos, int *n_pos)
{
    char *opts[CLI_MAX_ARGS];
    int n_opts = 1;
    *n_pos = 0;
    if (argc > CLI_MAX_ARGS || argc > max_pos) {
        memset(out, 0, sizeof *out);
        cli_error("%s: too many arguments", cmd->name);
        return CLI_ERROR;
    }
    opts[0] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            opts[n_opts++] = argv[i];
            if (argv[i][1] == '-' && takes_value(cmd, argv[i]) && i + 1 < argc)
                opts[n_opts++] = argv[++i];
        } else {
            pos[(*n_pos)++] = argv[i];
        }
    }
    return cli_parse(cmd, n_opts, opts, out);
}

bool cli_get_duration_ms(const struct cli_cmd *cmd, const struct cli_values *vals, const char *name,
                         unsigned long long max_ms, unsigned long long *out)
{
    const char *v = cli_get(cmd, vals, name);
    if (v == NULL)
        return true;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10), unit = 0;
    if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "d") == 0)
        unit = 86400000;
    if (v[0] < '0' || v[0] > '9' || errno || unit == 0 || x == 0 || x > max_ms / unit) {
        cli_error("%s: --%s must be a positive duration such as 90s, 10m, 2h or 7d (at most %llu "
                  "s), not '%s'",
                  cmd->name, name, max_ms / 1000, v);
        return false;
    }
    *out = x * unit;
    return true;
}

static bool config_value_text(json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v))
        return snprintf(buf, cap, "%s", json_string_value(v)) < (int)cap;
    if (json_is_integer(v))
        return snprintf(buf, cap, "%lld", (long long)json_integer_value(v)) < (int)cap;
    if (json_is_boolean(v))
        return snprintf(buf, cap, "%s", json_is_true(v) ? "1" : "0") < (int)cap;
    return false;
}

bool cli_apply_config_file(const struct cli_cmd *cmd, struct cli_values *vals, const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        cli_error("config file %s: %s (line %d)", path, jerr.text, jerr.line);
        return false;
    }
    bool ok = json_is_object(root);
    if (!ok)
        cli_error("config file %s: must hold one JSON object", path);
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (!ok)
            break;
        int i = -1;
        for (int j = 0; j < cmd->n_opts; j++)
            if (strcmp(cmd->opts[j].name, key) == 0 && strcmp(key, "config") != 0)
                i = j;
        char text[1024];
        if (i < 0) {
            cli_error("config file %s: unknown key \"%s\"", path, key);
            ok = false;
        } else if (!config_value_text(value, text, sizeof text)) {
            cli_error("config file %s: \"%s\" must be a string, number or boolean", path, key);
            ok = false;
        } else if (!vals->given[i]) {
            vals->v[i] = NULL;
            free(vals->owned[i]);
            vals->owned[i] = NULL;
            ok = append_value(vals, i, text) == 0;
        }
    }
    json_decref(root);
    return ok;
}
