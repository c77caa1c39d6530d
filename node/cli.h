/*
 * cli.h - command-line plumbing shared by every `nexus` command.
 *
 * One table describes a command's options; the same table drives parsing
 * (getopt_long), defaults, environment variables and --help, so the help text
 * can never disagree with what is parsed.
 */
#ifndef NX_NODE_CLI_H
#define NX_NODE_CLI_H

#include <stdbool.h>
#include <stdio.h>

#define CLI_MAX_OPTS 32

struct cli_opt {
    const char *name; /* long option name, without the dashes */
    const char *arg;  /* placeholder for the value ("HOST:PORT"), NULL for a flag */
    const char *def;  /* default value (also shown in --help), NULL for none */
    const char *env;  /* environment variable that stands for it, or NULL */
    const char *help;
    bool repeat; /* may be given several times; values joined by '\n' */
};

struct cli_cmd {
    const char *name;    /* "node", "status", "agent run-local" */
    const char *args;    /* positional arguments for the usage line, or "" */
    const char *summary; /* one line */
    const struct cli_opt *opts;
    int n_opts;
};

struct cli_values {
    const char *v[CLI_MAX_OPTS]; /* value per option (default/env applied), NULL if unset */
    char *owned[CLI_MAX_OPTS];   /* joined repeated values, freed by cli_values_free */
    bool given[CLI_MAX_OPTS];    /* set on the command line (not a default or env) */
    int first_positional;        /* index in argv of the first positional argument */
};

/* Parse results besides success. */
enum { CLI_OK = 0, CLI_HELP = 1, CLI_ERROR = 2 };

/*
 * Parses argv (argv[0] is the command word) against cmd. On CLI_ERROR a
 * one-line message is printed to stderr. On CLI_HELP the help was printed.
 */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct cli_values *out);
void cli_values_free(struct cli_values *vals);
void cli_print_help(const struct cli_cmd *cmd, FILE *out);

/*
 * Reads a JSON config file whose keys are option names; a key sets its option
 * unless the command line gave it. Unknown keys and wrong types are errors
 * (printed with the file name). Returns false on error.
 */
bool cli_apply_config_file(const struct cli_cmd *cmd, struct cli_values *vals, const char *path);

/* Value of option `name`, or NULL. Aborts on an unknown name (a bug). */
const char *cli_get(const struct cli_cmd *cmd, const struct cli_values *vals, const char *name);
bool cli_flag(const struct cli_cmd *cmd, const struct cli_values *vals, const char *name);
/* Parses an unsigned integer option into *out; prints an error and returns false if bad. */
bool cli_get_u64(const struct cli_cmd *cmd, const struct cli_values *vals, const char *name,
                 unsigned long long max, unsigned long long *out);

/*
 * cli_parse for commands whose options may come after their positional
 * arguments ("nexus ledger transfer --from a ..."): the positionals are
 * returned in pos (at most max_pos, in order), the options parsed as usual.
 * On CLI_ERROR out may be partly filled: cli_values_free it all the same.
 */
#define CLI_MAX_ARGS 64
int cli_parse_anywhere(const struct cli_cmd *cmd, int argc, char **argv, struct cli_values *out,
                       char **pos, int max_pos, int *n_pos);

/* Parses a duration option ("500ms", "90s", "10m", "2h", "7d"; a bare number is seconds). */
bool cli_get_duration_ms(const struct cli_cmd *cmd, const struct cli_values *vals, const char *name,
                         unsigned long long max_ms, unsigned long long *out);

/* Options every client command shares: --api, --token, --data-dir, --json. */
#define CLI_CLIENT_OPTS                                                                            \
    {"api", "HOST:PORT", "127.0.0.1:7401", "NEXUS_API", "address of a node's HTTP API", false},    \
        {"token",                                                                                  \
         "TOKEN",                                                                                  \
         NULL,                                                                                     \
         "NEXUS_TOKEN",                                                                            \
         "operator token (default: read from DATA_DIR/operator.token)",                            \
         false},                                                                                   \
        {"data-dir", "DIR", NULL, NULL, "a node's data directory, to read its operator token",     \
         false},                                                                                   \
    {                                                                                              \
        "json", NULL, NULL, NULL, "print JSON instead of text", false                              \
    }

/* Prints "nexus: <message>" on one line to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
