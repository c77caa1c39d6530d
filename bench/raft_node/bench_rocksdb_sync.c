/*
 * bench_rocksdb_sync - the storage floor under Raft: synced RocksDB puts of
 * small values from 1 and 16 concurrent writers (threads) into a fresh
 * database in a temporary directory on the same disk as the node's data.
 * RocksDB groups concurrent synced writes into one WAL sync, as the Raft host
 * does per loop iteration, so the 16-writer figure is the group-commit
 * ceiling of the disk. bench/raft_node/bench_raft_node.py compares the
 * node's commit rate with these figures; the unsynced rate is the baseline
 * printed here.
 *
 *   bench_rocksdb_sync [DIR]   prints "RESULT writers=N sync=S ops_per_s=X p50_us=Y p99_us=Z"
 */
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define OPS_TOTAL 4000
#define MAX_WRITERS 16
#define VALUE_BYTES 64

struct writer {
    rocksdb_t *db;
    rocksdb_writeoptions_t *wo;
    int id;
    int ops;
    uint64_t *lat_us;
};

static void *run_writer(void *arg)
{
    struct writer *w = arg;
    char key[32], value[VALUE_BYTES];
    memset(value, 'v', sizeof value);
    for (int i = 0; i < w->ops; i++) {
        int kl = snprintf(key, sizeof key, "w%02d-%08d", w->id, i);
        char *err = NULL;
        uint64_t t0 = nx_clock_mono_us();
        rocksdb_put(w->db, w->wo, key, (size_t)kl, value, sizeof value, &err);
        w->lat_us[i] = nx_clock_mono_us() - t0;
        if (err) {
            fprintf(stderr, "bench_rocksdb_sync: put: %s\n", err);
            rocksdb_free(err);
            exit(1);
        }
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double run(const char *dir, int writers, bool sync)
{
    char path[512];
    snprintf(path, sizeof path, "%s/db-%d-%d", dir, writers, (int)sync);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, path, &err);
    if (db == NULL) {
        fprintf(stderr, "bench_rocksdb_sync: open %s: %s\n", path, err);
        exit(1);
    }
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, sync);
    int per = OPS_TOTAL / writers;
    uint64_t *lat = calloc((size_t)OPS_TOTAL, sizeof *lat);
    struct writer ws[MAX_WRITERS];
    pthread_t th[MAX_WRITERS];
    uint64_t t0 = nx_clock_mono_us();
    for (int i = 0; i < writers; i++) {
        ws[i] = (struct writer){db, wo, i, per, lat + (size_t)i * (size_t)per};
        pthread_create(&th[i], NULL, run_writer, &ws[i]);
    }
    for (int i = 0; i < writers; i++)
        pthread_join(th[i], NULL);
    uint64_t us = nx_clock_mono_us() - t0;
    size_t n = (size_t)per * (size_t)writers;
    qsort(lat, n, sizeof *lat, cmp_u64);
    double ops = n * 1e6 / (double)(us ? us : 1);
    printf("RESULT writers=%d sync=%d ops_per_s=%.0f p50_us=%llu p99_us=%llu\n", writers, (int)sync,
           ops, (unsigned long long)lat[(n - 1) / 2], (unsigned long long)lat[(n * 99 - 1) / 100]);
    free(lat);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    return ops;
}

int main(int argc, char **argv)
{
    char tmp[] = "/tmp/nx-bench-rocksdb-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmp);
    if (dir == NULL) {
        perror("mkdtemp");
        return 1;
    }
    double s1 = run(dir, 1, true);
    double s16 = run(dir, MAX_WRITERS, true);
    double u1 = run(dir, 1, false);
    printf("%-40s %12s %12s %8s\n", "metric", "synced", "baseline", "ratio");
    printf("%-40s %10.0f/s %10.0f/s %7.2fx\n", "1 writer (vs unsynced 1 writer)", s1, u1, s1 / u1);
    printf("%-40s %10.0f/s %10.0f/s %7.2fx\n", "16 writers (vs synced 1 writer)", s16, s1,
           s16 / s1);
    if (argc <= 1) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return 0;
}
