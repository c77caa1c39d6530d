/* cmd_status.c - `nexus status`: one node's view of itself, from GET /v1/status. */
#include <stdio.h>

#include "client.h"
#include "base/base.h"
#include "commands.h"

static const struct cli_opt status_opts[] = {CLI_CLIENT_OPTS};

const struct cli_cmd cmd_status_spec = {"status", "", "show a node's id, cluster, uptime and peers",
                                        status_opts, NX_ARRAY_LEN(status_opts)};

static void print_status_text(json_t *st)
{
    printf("node id:    %s\n", json_string_value(json_object_get(st, "node_id")));
    printf("cluster id: %s\n", json_string_value(json_object_get(st, "cluster_id")));
    printf("version:    %s\n", json_string_value(json_object_get(st, "version")));
    printf("uptime:     %llds\n", (long long)json_integer_value(json_object_get(st, "uptime_s")));
    printf("peers:      %lld connected\n",
           (long long)json_integer_value(json_object_get(st, "peer_count")));
    json_t *raft = json_object_get(st, "raft");
    if (json_is_object(raft)) {
        const char *leader = json_string_value(json_object_get(raft, "leader"));
        printf("raft:       %s, term %lld, leader %.16s, commit %lld, applied %lld, %zu voters, "
               "%zu learners\n",
               json_string_value(json_object_get(raft, "role")),
               (long long)json_integer_value(json_object_get(raft, "term")),
               leader && leader[0] ? leader : "(none)",
               (long long)json_integer_value(json_object_get(raft, "commit_index")),
               (long long)json_integer_value(json_object_get(raft, "applied_index")),
               json_array_size(json_object_get(raft, "voters")),
               json_array_size(json_object_get(raft, "learners")));
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(st, "peers"), i, p)
    {
        char rtt[32] = "-";
        json_t *rtt_us = json_object_get(p, "rtt_us");
        if (json_is_integer(rtt_us))
            snprintf(rtt, sizeof rtt, "%lldus", (long long)json_integer_value(rtt_us));
        printf("  %.16s  %-21s %-9s rtt=%-9s pongs=%lld\n",
               json_string_value(json_object_get(p, "id")),
               json_string_value(json_object_get(p, "address")),
               json_is_true(json_object_get(p, "connected")) ? "connected" : "unreached", rtt,
               (long long)json_integer_value(json_object_get(p, "pongs")));
    }
}

int cmd_status(int argc, char **argv)
{
    return client_simple_command(&cmd_status_spec, argc, argv, "GET", "/v1/status",
                                 print_status_text);
}
