/*
 * lin_check - checks a text history file for linearizability (tests/lin/lin.h).
 *
 *   lin_check FILE     exit 0: linearizable; 1: not (with an explanation);
 *                      2: the file cannot be read or parsed.
 */
#include <stdio.h>

#include "tests/lin/lin.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: lin_check FILE\n");
        return 2;
    }
    struct lin_history h;
    lin_history_init(&h);
    char err[256] = "";
    int rc = lin_history_read_file(&h, argv[1], err, sizeof err);
    if (rc != NX_OK) {
        fprintf(stderr, "lin_check: %s: %s\n", argv[1], err[0] ? err : nx_strerror(rc));
        lin_history_free(&h);
        return 2;
    }
    struct lin_result res;
    rc = lin_check(&h, 0, &res);
    lin_history_free(&h);
    if (rc != NX_OK) {
        fprintf(stderr, "lin_check: %s\n", nx_strerror(rc));
        return 2;
    }
    printf("ops=%llu keys=%llu steps=%llu%s\n", (unsigned long long)res.ops_checked,
           (unsigned long long)res.keys_checked, (unsigned long long)res.steps,
           res.budget_exceeded ? " (search budget exceeded on some key: not decided)" : "");
    if (!res.linearizable) {
        printf("NOT LINEARIZABLE: %s\n", res.explanation);
        return 1;
    }
    printf("linearizable\n");
    return 0;
}
