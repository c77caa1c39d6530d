/*
 * cmd_agent.c - `nexus agent SUBCOMMAND`: dispatches to the agent commands.
 * run-local (cmd_agent_local.c) runs a bundle here with no cluster; publish,
 * list, show, search, run and plan (cmd_agent_mesh.c) and deploy, stop, ps
 * and logs (cmd_deploy.c) talk to a node.
 */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "cmd_agent_local.h"
#include "commands.h"

struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const struct cli_cmd *spec;
};

static const struct subcommand subcommands[] = {
    {"publish", cmd_agent_publish, &cmd_agent_publish_spec},
    {"deprecate", cmd_agent_deprecate, &cmd_agent_deprecate_spec},
    {"list", cmd_agent_list, &cmd_agent_list_spec},
    {"show", cmd_agent_show, &cmd_agent_show_spec},
    {"search", cmd_agent_search, &cmd_agent_search_spec},
    {"run", cmd_agent_run, &cmd_agent_run_spec},
    {"plan", cmd_agent_plan, &cmd_agent_plan_spec},
    {"deploy", cmd_agent_deploy, &cmd_agent_deploy_spec},
    {"stop", cmd_agent_stop, &cmd_agent_stop_spec},
    {"ps", cmd_agent_ps, &cmd_agent_ps_spec},
    {"logs", cmd_agent_logs, &cmd_agent_logs_spec},
    {"run-local", cmd_agent_run_local, &cmd_agent_run_local_spec},
};

static const struct cli_opt no_opts[] = {{"json", NULL, NULL, NULL, "(per subcommand)", false}};

const struct cli_cmd cmd_agent_spec = {
    "agent", "SUBCOMMAND ...",
    "agent commands: publish, deprecate, list, show, search, run, plan, deploy, stop, ps, logs, "
    "run-local (see 'nexus agent SUBCOMMAND --help')",
    no_opts, 0};

void cmd_agent_print_help(FILE *out)
{
    for (size_t i = 0; i < NX_ARRAY_LEN(subcommands); i++) {
        fputc('\n', out);
        cli_print_help(subcommands[i].spec, out);
    }
}

int cmd_agent(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("Usage: nexus agent SUBCOMMAND [OPTIONS]\n\nSubcommands:\n");
        for (size_t i = 0; i < NX_ARRAY_LEN(subcommands); i++)
            printf("  %-10s %s\n", subcommands[i].name, subcommands[i].spec->summary);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < NX_ARRAY_LEN(subcommands); i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    cli_error("agent: unknown subcommand '%s'; run 'nexus agent --help'", argv[1]);
    return 2;
}
