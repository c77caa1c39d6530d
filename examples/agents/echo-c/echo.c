/*
 * echo-c - the smallest useful agent: answers {"echo": <input>, "calls": n}
 * where n counts the calls of its session through the context. Shows the C
 * agent SDK (sdk/agent_sdk.h): a handler and one call to nxa_run.
 */
#include "sdk/agent_sdk.h"

static int handle(void *arg, json_t *input, json_t *context, struct nxa_result *res)
{
    (void)arg;
    json_int_t calls = json_integer_value(json_object_get(context, "calls")) + 1;
    res->output = json_pack("{s:O, s:I}", "echo", input, "calls", calls);
    res->context = json_pack("{s:I}", "calls", calls);
    return 0;
}

int main(void)
{
    return nxa_run(handle, NULL);
}
