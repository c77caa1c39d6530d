/*
 * cmd_agent_local.h - `nexus agent run-local`: run an agent bundle on this
 * machine, in the sandbox, with no cluster. Owned by the sandbox engineer;
 * node/main.c dispatches `nexus agent run-local ...` here.
 */
#ifndef NX_NODE_CMD_AGENT_LOCAL_H
#define NX_NODE_CMD_AGENT_LOCAL_H

/* Exit codes of cmd_agent_run_local. */
#define CMD_AGENT_OK 0
#define CMD_AGENT_FAILED 1 /* the agent failed: error reply, timeout, crash, protocol error */
#define CMD_AGENT_USAGE 2  /* bad options, unreadable bundle, invalid manifest */

/*
 * argv[0] is "run-local"; the rest are its options and BUNDLE_DIR (see
 * --help). Prints the agent's output then its usage on stdout (all JSON
 * with --json), errors on stderr. Returns one of the CMD_AGENT_* codes.
 */
int cmd_agent_run_local(int argc, char **argv);

struct cli_cmd;
extern const struct cli_cmd cmd_agent_run_local_spec;

#endif
