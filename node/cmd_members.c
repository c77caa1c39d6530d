/* cmd_members.c - `nexus members` (GET /v1/members) and `nexus leave` (POST /v1/leave). */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "client.h"
#include "commands.h"

static const struct cli_opt client_opts[] = {CLI_CLIENT_OPTS};

const struct cli_cmd cmd_members_spec = {
    "members", "[remove NODE_ID]",
    "list the mesh's members: state, incarnation, resources, labels, Raft role ('members remove "
    "NODE_ID --help': take a node out of the registry)",
    client_opts, NX_ARRAY_LEN(client_opts)};
const struct cli_cmd cmd_leave_spec = {"leave", "",
                                       "make the node leave the mesh gracefully and exit",
                                       client_opts, NX_ARRAY_LEN(client_opts)};

static void print_member(json_t *m)
{
    json_t *r = json_object_get(m, "resources");
    char labels[256] = "";
    const char *k;
    json_t *v;
    size_t used = 0;
    json_object_foreach(json_object_get(m, "labels"), k, v)
    {
        int n = snprintf(labels + used, sizeof labels - used, "%s%s=%s", used ? "," : "", k,
                         json_string_value(v));
        if (n < 0 || (size_t)n >= sizeof labels - used)
            break;
        used += (size_t)n;
    }
    printf("%.16s  %-21s %-7s %-14lld %5lld/%-5lld %6lld/%-6lld %4lld  %-9s %s\n",
           json_string_value(json_object_get(m, "id")),
           json_string_value(json_object_get(m, "address")),
           json_string_value(json_object_get(m, "state")),
           (long long)json_integer_value(json_object_get(m, "incarnation")),
           (long long)json_integer_value(json_object_get(r, "cpu_free_millicores")),
           (long long)json_integer_value(json_object_get(r, "cpu_total_millicores")),
           (long long)(json_integer_value(json_object_get(r, "mem_free_bytes")) >> 20),
           (long long)(json_integer_value(json_object_get(r, "mem_total_bytes")) >> 20),
           (long long)json_integer_value(json_object_get(r, "gpu_count")),
           json_string_value(json_object_get(m, "raft_role")), used ? labels : "-");
}

static void print_members(json_t *reply)
{
    printf("%-16s  %-21s %-7s %-14s %11s %13s %4s  %-9s %s\n", "ID", "ADDRESS", "STATE",
           "INCARNATION", "CPU(m)", "MEM(MiB)", "GPUS", "RAFT", "LABELS");
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(reply, "members"), i, m) print_member(m);
}

static void print_left(json_t *reply)
{
    printf("node %.16s is leaving the mesh\n",
           json_string_value(json_object_get(reply, "node_id")) ?: "");
}

int cmd_members(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "remove") == 0)
        return cmd_member_remove(argc - 1, argv + 1);
    return client_simple_command(&cmd_members_spec, argc, argv, "GET", "/v1/members",
                                 print_members);
}

int cmd_leave(int argc, char **argv)
{
    return client_simple_command(&cmd_leave_spec, argc, argv, "POST", "/v1/leave", print_left);
}
