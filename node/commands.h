/*
 * commands.h - the `nexus` commands, one function each. main.c dispatches.
 * Each takes argv with argv[0] the command word and returns the exit code:
 * 0 success, 1 failure, 2 usage error.
 */
#ifndef NX_NODE_COMMANDS_H
#define NX_NODE_COMMANDS_H

#include <stdio.h>

#include <jansson.h>

#include "cli.h"

int cmd_node(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_members(int argc, char **argv);
int cmd_leave(int argc, char **argv);
int cmd_agent(int argc, char **argv);
/* Prints the help of every agent subcommand (for `nexus --help`). */
void cmd_agent_print_help(FILE *out);
/* Agent subcommands over the mesh (cmd_agent_mesh.c); argv[0] is the subcommand. */
int cmd_agent_publish(int argc, char **argv);
int cmd_agent_deprecate(int argc, char **argv);
int cmd_agent_list(int argc, char **argv);
int cmd_agent_show(int argc, char **argv);
int cmd_agent_search(int argc, char **argv);
int cmd_agent_run(int argc, char **argv);
int cmd_agent_plan(int argc, char **argv);
/* Deployments (cmd_deploy.c). */
int cmd_agent_deploy(int argc, char **argv);
int cmd_agent_stop(int argc, char **argv);
int cmd_agent_ps(int argc, char **argv);
int cmd_agent_logs(int argc, char **argv);
int cmd_kv(int argc, char **argv);
int cmd_ledger(int argc, char **argv);
int cmd_account(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_member_remove(int argc, char **argv);
int cmd_tenant(int argc, char **argv);
int cmd_session(int argc, char **argv);
int cmd_perm(int argc, char **argv);

extern const struct cli_cmd cmd_node_spec;
extern const struct cli_cmd cmd_init_spec;
extern const struct cli_cmd cmd_status_spec;
extern const struct cli_cmd cmd_members_spec;
extern const struct cli_cmd cmd_leave_spec;
extern const struct cli_cmd cmd_agent_spec;
extern const struct cli_cmd cmd_agent_publish_spec;
extern const struct cli_cmd cmd_agent_deprecate_spec;
extern const struct cli_cmd cmd_agent_list_spec;
extern const struct cli_cmd cmd_agent_show_spec;
extern const struct cli_cmd cmd_agent_search_spec;
extern const struct cli_cmd cmd_agent_run_spec;
extern const struct cli_cmd cmd_agent_plan_spec;
extern const struct cli_cmd cmd_agent_deploy_spec;
extern const struct cli_cmd cmd_agent_stop_spec;
extern const struct cli_cmd cmd_agent_ps_spec;
extern const struct cli_cmd cmd_agent_logs_spec;
extern const struct cli_cmd cmd_kv_spec;
extern const struct cli_cmd cmd_ledger_spec;
extern const struct cli_cmd cmd_account_spec;
extern const struct cli_cmd cmd_token_spec;
extern const struct cli_cmd cmd_tenant_spec;
extern const struct cli_cmd cmd_session_spec;
extern const struct cli_cmd cmd_perm_spec;

/* Shared by the agent and session commands (cmd_agent_mesh.c). */
json_t *cmd_agent_load_input(const char *text); /* JSON text or "-" (stdin); NULL: error printed */
void cmd_agent_print_run(json_t *answer);       /* output, node, usage, charge */

#endif
