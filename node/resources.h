/*
 * resources.h - what this machine offers agents: CPU, memory and GPUs.
 *
 * CPU: online processors times 1000 millicores; free is that minus the
 * one-minute load average. Memory: MemTotal and MemAvailable from
 * /proc/meminfo. GPUs: the --gpus override (NVML detection comes with the
 * scheduler). What running agents reserve is subtracted by the caller.
 */
#ifndef NX_NODE_RESOURCES_H
#define NX_NODE_RESOURCES_H

#include <stdint.h>

#include "base/base.h"

#define NODE_GPUS_MAX 16

struct node_resources {
    uint32_t cpu_total_millicores;
    uint32_t cpu_free_millicores;
    uint64_t mem_total_bytes;
    uint64_t mem_free_bytes;
    uint32_t gpu_count;
    uint64_t gpu_mem_bytes[NODE_GPUS_MAX];
};

/* Reads the machine's resources; gpus >= 0 overrides GPU detection. 0 or NX_ERR_IO. */
int node_resources_detect(struct node_resources *r, int gpus, uint64_t gpu_mem_bytes) NX_MUST_USE;

#endif
