/* resources.c - CPU and memory from /proc and sysconf; GPUs from the override. */
#include "resources.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_meminfo(uint64_t *total, uint64_t *avail)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (f == NULL)
        return NX_ERR_IO;
    char line[256];
    unsigned long long kib;
    *total = *avail = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
            *total = kib * 1024ull;
        else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            *avail = kib * 1024ull;
    }
    fclose(f);
    return *total ? NX_OK : NX_ERR_IO;
}

int node_resources_detect(struct node_resources *r, int gpus, uint64_t gpu_mem_bytes)
{
    memset(r, 0, sizeof *r);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    r->cpu_total_millicores = (uint32_t)cpus * 1000u;
    double load[1] = {0};
    if (getloadavg(load, 1) == 1 && load[0] > 0) {
        double used = load[0] * 1000.0;
        r->cpu_free_millicores =
            used >= r->cpu_total_millicores ? 0 : r->cpu_total_millicores - (uint32_t)used;
    } else {
        r->cpu_free_millicores = r->cpu_total_millicores;
    }
    int rc = read_meminfo(&r->mem_total_bytes, &r->mem_free_bytes);
    if (rc != NX_OK)
        return rc;
    if (gpus > 0) {
        r->gpu_count = gpus > NODE_GPUS_MAX ? NODE_GPUS_MAX : (uint32_t)gpus;
        for (uint32_t i = 0; i < r->gpu_count; i++)
            r->gpu_mem_bytes[i] = gpu_mem_bytes;
    }
    return NX_OK;
}
