/*
 * agent_sdk.h - the C agent SDK: the agent's side of the NexusCore agent
 * protocol (docs/agent-protocol.md), so that an agent is a handler function
 * and one call to nxa_run.
 *
 * Owns: reading request lines from stdin, parsing them, calling the
 * handler, writing reply and log lines to stdout. Never touches: anything
 * else of the agent's process; it links only jansson and libc, so an agent
 * built with it runs in the sandbox (which binds /usr read-only) as is.
 *
 *   static int handle(void *arg, json_t *input, json_t *context, struct nxa_result *res)
 *   {
 *       res->output = json_pack("{s:O}", "echo", input);
 *       return 0;
 *   }
 *   int main(void) { return nxa_run(handle, NULL); }
 */
#ifndef NXA_AGENT_SDK_H
#define NXA_AGENT_SDK_H

#include <jansson.h>
#include <stddef.h>

#define NXA_FRAME_MAX_BYTES (1u << 20) /* same as the node's SBX_FRAME_MAX_BYTES */
#define NXA_ERROR_MAX 512

struct nxa_result {
    json_t *output;            /* set by the handler: a new reference, taken by the SDK */
    json_t *context;           /* optional new context (new reference); NULL keeps none */
    char error[NXA_ERROR_MAX]; /* set with a non-zero handler return */
};

/*
 * The handler: input and context are borrowed for the call (context is
 * JSON null when the session has none). Return 0 with res->output set, or
 * non-zero with res->error set: the node then receives {"id":..,"error":..}.
 */
typedef int (*nxa_handler_fn)(void *arg, json_t *input, json_t *context, struct nxa_result *res);

/*
 * Serves requests until stdin ends. Returns 0 at end of input, 1 when stdin
 * or stdout failed. A malformed or oversized request line gets an error
 * reply (id 0 when it has none) and the loop goes on.
 */
int nxa_run(nxa_handler_fn handler, void *arg);

/* Writes {"log":"<text>"} (a printf format) as its own line. */
void nxa_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
