/*
 * main.c - `nexus`: one binary for the daemon (`nexus node`) and the CLI.
 *
 * Every command but `node` and `init` is a thin client of a node's HTTP API
 * (see client.h); `node` runs the daemon (daemon.c, whose top comment
 * documents the loop order).
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "node.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const struct cli_cmd *spec;
    const char *summary;
};

static const struct command commands[] = {
    {"node", cmd_node, &cmd_node_spec, NULL},
    {"init", cmd_init, &cmd_init_spec, NULL},
    {"status", cmd_status, &cmd_status_spec, NULL},
    {"members", cmd_members, &cmd_members_spec, NULL},
    {"leave", cmd_leave, &cmd_leave_spec, NULL},
    {"agent", cmd_agent, &cmd_agent_spec, NULL},
    {"kv", cmd_kv, &cmd_kv_spec, NULL},
    {"ledger", cmd_ledger, &cmd_ledger_spec, NULL},
    {"account", cmd_account, &cmd_account_spec, NULL},
    {"token", cmd_token, &cmd_token_spec, NULL},
    {"tenant", cmd_tenant, &cmd_tenant_spec, NULL},
    {"session", cmd_session, &cmd_session_spec, NULL},
    {"perm", cmd_perm, &cmd_perm_spec, NULL},
};

static void print_usage(FILE *out, bool full)
{
    fprintf(out,
            "nexus %s - NexusCore, a peer-to-peer agent mesh\n\n"
            "Usage: nexus COMMAND [OPTIONS]\n\nCommands:\n",
            NODE_VERSION);
    for (size_t i = 0; i < NX_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].spec->summary);
    fprintf(out, "  %-10s %s\n", "version", "print the version");
    fprintf(out, "\nRun 'nexus COMMAND --help' for one command's options.\n");
    if (!full)
        return;
    for (size_t i = 0; i < NX_ARRAY_LEN(commands); i++) {
        if (commands[i].spec->n_opts == 0)
            continue; /* a command group: its subcommands follow */
        fputc('\n', out);
        cli_print_help(commands[i].spec, out);
    }
    cmd_agent_print_help(out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr, false);
        return 2;
    }
    if (sodium_init() < 0) {
        cli_error("cannot initialise libsodium");
        return 1;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout, true);
        return 0;
    }
    if (strcmp(name, "version") == 0 || strcmp(name, "--version") == 0) {
        printf("nexus %s\n", NODE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < NX_ARRAY_LEN(commands); i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    cli_error("unknown command '%s'; run 'nexus --help' for the list", name);
    return 2;
}
