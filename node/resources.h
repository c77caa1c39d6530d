/*
 * resources.h - what this machine offers agents: CPU, memory and GPUs, and
 * what the runs it admitted hold of them.
 *
 * Owns: reading the machine's capacity and load (from a proc root that tests
 * can replace with a fake directory), GPU discovery through NVML loaded with
 * dlopen (no NVML headers and no link-time dependency: a host without the
 * NVIDIA driver simply has no GPUs), and the reservation ledger of admitted
 * runs (struct node_reserved), whose holdings are subtracted from what the
 * node advertises through gossip.
 *
 * Never touches: gossip, the network, the loop, or any decision about which
 * run goes where (that is node/placement.h, a pure function).
 *
 * Sources, and why:
 *   CPU total   online CPUs ("cpuN" lines of <proc>/stat; sysconf as fallback)
 *               times 1000 millicores.
 *   CPU free    total minus the one-minute load average of <proc>/loadavg
 *               times 1000. The load average is stateless and smooth, so one
 *               busy second does not swing placement. With a struct
 *               node_cpu_sampler, the busy share of the "cpu" line of
 *               <proc>/stat since the previous call instead: faster to react,
 *               at the price of keeping the previous sample (see
 *               docs/scheduling.md).
 *   memory      MemTotal and MemAvailable of <proc>/meminfo.
 *   cgroups     the node's own cgroups (<proc>/self/cgroup, v1 or v2) and
 *               their ancestors: a CPU quota caps the CPU total, a memory
 *               limit caps the memory total and (limit - usage) the free
 *               memory. In a container /proc shows the host; this does not.
 *   GPUs        NVML: nvmlInit_v2, nvmlDeviceGetCount_v2,
 *               nvmlDeviceGetHandleByIndex_v2, nvmlDeviceGetMemoryInfo;
 *               total memory per device. The --gpus override wins (and
 *               cpu/mem overrides exist for multi-node tests on one host).
 *
 * What is advertised: free = min(measured free, capacity - reserved), per
 * dimension. A run that uses what it reserved shows up in both terms, so the
 * minimum counts it once; a run that reserved but is idle still holds its
 * share. GPUs are whole devices: a reserved GPU is removed from the list.
 *
 * Use in the node (loop thread only: the NVML cache has no lock):
 *
 *     node_resources_detect_opts(&r, &opts);            every refresh
 *     adv = r; node_resources_subtract(&adv, &reserved);  advertise adv
 *     on a run:  place_admit(&needs, self, &adv, ...)    (node/placement.h)
 *                node_resources_reserve(&reserved, &r, &req, &grant)
 *     run ends:  node_resources_release(&reserved, &grant)
 */
#ifndef NX_NODE_RESOURCES_H
#define NX_NODE_RESOURCES_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

#define NODE_GPUS_MAX 16         /* devices listed (= GOSSIP_GPUS_MAX) */
#define NODE_PROC_ROOT_MAX 200   /* bytes of a proc or cgroup root path */
#define NODE_CGROUP_PATH_MAX 512 /* bytes of our path inside a cgroup hierarchy */
#define NODE_NVML_LIB "libnvidia-ml.so.1"
#define NODE_CPU_MILLICORES_MAX 4000000u /* 4000 CPUs: a sanity bound on input */

struct node_resources {
    uint32_t cpu_total_millicores;
    uint32_t cpu_free_millicores;
    uint64_t mem_total_bytes;
    uint64_t mem_free_bytes;
    /* GPUs offered: gpu_count entries of gpu_mem_bytes (total memory per
     * device) and gpu_index (the device's index on this machine). After
     * node_resources_subtract only the unreserved devices are listed. */
    uint32_t gpu_count;
    uint64_t gpu_mem_bytes[NODE_GPUS_MAX];
    uint32_t gpu_index[NODE_GPUS_MAX];
    uint32_t gpu_total_count; /* devices on the machine, reserved or not */
    bool gpu_from_nvml;       /* true when NVML reported the devices */
    bool cgroup_limited;      /* a cgroup CPU quota or memory limit lowered a total */
};

/*
 * The previous /proc/stat sample, for CPU use measured over the interval
 * between two detections instead of the load average. Zero-initialise it and
 * keep it across calls; the first call (and one after the counters went
 * backwards) falls back to the load average.
 */
struct node_cpu_sampler {
    uint64_t busy_ticks;  /* user+nice+system+irq+softirq+steal at the last sample */
    uint64_t total_ticks; /* busy plus idle and iowait */
    bool primed;
};

/* How to detect. Zero-initialised means: real /proc, NVML, nothing held back. */
struct node_detect_opts {
    const char *proc_root; /* borrowed; NULL means "/proc" */
    const char *nvml_lib;  /* borrowed; NULL means NODE_NVML_LIB, "" disables NVML */
    /* GPUs: > 0 advertises that many devices of gpu_mem_bytes each (tests,
     * hosts without NVML); 0 asks NVML; < 0 advertises none. */
    int gpus;
    uint64_t gpu_mem_bytes;
    /* Held back for the node itself and the OS (tests use it to shrink a node):
     * subtracted from total and free. */
    uint32_t system_reserved_cpu_millicores;
    uint64_t system_reserved_mem_bytes;
    /* > 0: advertise exactly this much, all of it free, instead of what is
     * detected (like gpus > 0; for multi-node tests on one machine, where
     * every node would otherwise see the same host). The system reserve and
     * reservations still come off. */
    uint32_t cpu_override_millicores;
    uint64_t mem_override_bytes;
    /* Borrowed and updated: CPU use from /proc/stat deltas; NULL: load average. */
    struct node_cpu_sampler *cpu_sampler;
    /* Where cgroups are mounted (borrowed); NULL means "/sys/fs/cgroup", ""
     * ignores cgroup limits. Our cgroups are read from <proc>/self/cgroup. */
    const char *cgroup_root;
};

/*
 * Reads the machine's resources; gpus > 0 overrides GPU detection, 0 asks
 * NVML, < 0 means none. 0 or NX_ERR_IO (no meminfo). Kept for node/gossip_host.c.
 */
int node_resources_detect(struct node_resources *r, int gpus, uint64_t gpu_mem_bytes) NX_MUST_USE;

/*
 * Same, with every source injectable. Missing NVML is not an error (no GPUs);
 * a missing loadavg counts as idle; a missing or unreadable meminfo is
 * NX_ERR_IO. opts may be NULL (the defaults).
 */
int node_resources_detect_opts(struct node_resources *r,
                               const struct node_detect_opts *opts) NX_MUST_USE;

/* ---- reservations of admitted runs ---------------------------------------- */

/* What one run asks for. gpu_mem_bytes is the minimum memory of each GPU. */
struct node_request {
    uint32_t cpu_millicores;
    uint64_t mem_bytes;
    uint32_t gpus;
    uint64_t gpu_mem_bytes;
};

/* What one run was given; hand it back to node_resources_release. */
struct node_grant {
    uint32_t cpu_millicores;
    uint64_t mem_bytes;
    uint32_t gpu_mask; /* bit i: device index i */
};

/* What all admitted runs hold together. Zero-initialise it, or call _init. */
struct node_reserved {
    uint32_t cpu_millicores;
    uint64_t mem_bytes;
    uint32_t gpu_mask; /* bit i: device index i is held */
    uint32_t runs;
};

void node_reserved_init(struct node_reserved *rv);

/*
 * Reserves req out of the capacity in r (a fresh node_resources_detect*,
 * before subtraction) for one run. This is bookkeeping: it checks capacity
 * minus what is already reserved, never the measured load, so it cannot
 * disagree with itself from one second to the next; whether the machine is
 * free enough right now is the admission check's question (place_admit in
 * node/placement.h, against node_resources_subtract's result). Picks the
 * lowest-indexed unreserved GPUs with at least req->gpu_mem_bytes each.
 * On success fills *grant and returns 0; NX_ERR_LIMIT when a dimension does
 * not fit (nothing changes); NX_ERR_INVAL when req has more GPUs than
 * NODE_GPUS_MAX. All pointers are borrowed.
 */
int node_resources_reserve(struct node_reserved *rv, const struct node_resources *r,
                           const struct node_request *req, struct node_grant *grant) NX_MUST_USE;

/*
 * Gives a grant back. NX_ERR_INVAL, changing nothing, when the grant holds
 * more than is reserved (released twice, or never granted here).
 */
int node_resources_release(struct node_reserved *rv, const struct node_grant *grant) NX_MUST_USE;

/*
 * Turns detected resources into what may be advertised and admitted against:
 * free = min(measured free, total - reserved) for CPU and memory, and the
 * reserved GPUs dropped from the list. r is changed in place.
 */
void node_resources_subtract(struct node_resources *r, const struct node_reserved *rv);

#endif
