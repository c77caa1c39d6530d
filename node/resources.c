/*
 * resources.c - CPU and memory from a proc root, GPUs from NVML (dlopen) or
 * the override, and the reservation ledger of admitted runs.
 *
 * NVML is loaded at run time so that the node neither needs the NVIDIA
 * headers to build nor the driver to start. The handful of types used are
 * declared here, as the NVML ABI defines them (nvmlReturn_t is an int-sized
 * enum, 0 = NVML_SUCCESS; nvmlDevice_t an opaque pointer; nvmlMemory_t three
 * unsigned long long). The library stays loaded and initialised once opened:
 * nvmlInit can take hundreds of milliseconds, and detection runs every few
 * seconds. Detection is called from the loop thread only, so the cache needs
 * no lock.
 */
#include "resources.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- NVML, declared by hand ----------------------------------------------- */

typedef int nvml_return;                 /* nvmlReturn_t */
typedef struct nvml_device *nvml_device; /* nvmlDevice_t */
struct nvml_memory {                     /* nvmlMemory_t */
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
};
#define NVML_SUCCESS 0

typedef nvml_return (*nvml_init_fn)(void);
typedef nvml_return (*nvml_count_fn)(unsigned int *count);
typedef nvml_return (*nvml_handle_fn)(unsigned int index, nvml_device *device);
typedef nvml_return (*nvml_memory_fn)(nvml_device device, struct nvml_memory *memory);

#define NVML_PATH_MAX 256

static struct {
    char path[NVML_PATH_MAX]; /* library the cache holds; "" when none */
    void *lib;                /* dlopen handle, owned by the cache */
    bool ready;               /* nvmlInit_v2 succeeded */
    nvml_count_fn count;
    nvml_handle_fn handle;
    nvml_memory_fn memory;
} nvml;

static void nvml_forget(void)
{
    /* No nvmlShutdown: the library may hold driver state we do not own; the
     * process exits soon after, or tests switch between fake libraries. */
    if (nvml.lib != NULL)
        dlclose(nvml.lib);
    memset(&nvml, 0, sizeof nvml);
}

/* Loads and initialises the library at path once; false when unavailable. */
static bool nvml_open(const char *path)
{
    if (nvml.lib != NULL && strcmp(nvml.path, path) == 0)
        return nvml.ready;
    nvml_forget();
    if (strlen(path) >= sizeof nvml.path)
        return false;
    snprintf(nvml.path, sizeof nvml.path, "%s", path);
    nvml.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (nvml.lib == NULL) {
        NX_DEBUG("nvml_absent", "lib=%s", path);
        return false;
    }
    /* dlsym returns void *; converting through a union keeps -Wpedantic quiet. */
    union {
        void *p;
        nvml_init_fn init;
        nvml_count_fn count;
        nvml_handle_fn handle;
        nvml_memory_fn memory;
    } sym;
    sym.p = dlsym(nvml.lib, "nvmlInit_v2");
    nvml_init_fn init = sym.init;
    sym.p = dlsym(nvml.lib, "nvmlDeviceGetCount_v2");
    nvml.count = sym.count;
    sym.p = dlsym(nvml.lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml.handle = sym.handle;
    sym.p = dlsym(nvml.lib, "nvmlDeviceGetMemoryInfo");
    nvml.memory = sym.memory;
    if (init == NULL || nvml.count == NULL || nvml.handle == NULL || nvml.memory == NULL) {
        NX_WARN("nvml_unusable", "lib=%s reason=\"missing symbol\"", path);
        return false; /* keep the handle cached: do not retry every refresh */
    }
    nvml_return rc = init();
    if (rc != NVML_SUCCESS) {
        NX_WARN("nvml_unusable", "lib=%s reason=\"nvmlInit_v2 returned %d\"", path, rc);
        return false;
    }
    nvml.ready = true;
    return true;
}

/* Fills the GPU list from NVML; no GPUs when NVML is absent or fails. */
static void gpus_from_nvml(struct node_resources *r, const char *path)
{
    if (path[0] == '\0' || !nvml_open(path))
        return;
    unsigned int count = 0;
    if (nvml.count(&count) != NVML_SUCCESS)
        return;
    if (count > NODE_GPUS_MAX)
        count = NODE_GPUS_MAX; /* the rest are not offered: gossip lists at most this many */
    for (unsigned int i = 0; i < count; i++) {
        nvml_device dev = NULL;
        struct nvml_memory mem = {0};
        if (nvml.handle(i, &dev) != NVML_SUCCESS || nvml.memory(dev, &mem) != NVML_SUCCESS)
            continue; /* a device in a bad state is not offered */
        r->gpu_mem_bytes[r->gpu_count] = mem.total;
        r->gpu_index[r->gpu_count] = i;
        r->gpu_count++;
    }
    r->gpu_from_nvml = true;
}

/* ---- /proc ------------------------------------------------------------- */

static FILE *proc_open(const char *root, const char *name)
{
    char path[NODE_PROC_ROOT_MAX + 32];
    int n = snprintf(path, sizeof path, "%s/%s", root, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return NULL;
    return fopen(path, "re");
}

static int read_meminfo(const char *root, uint64_t *total, uint64_t *avail)
{
    FILE *f = proc_open(root, "meminfo");
    if (f == NULL)
        return NX_ERR_IO;
    char line[256];
    unsigned long long kib;
    *total = *avail = 0;
    bool have_avail = false;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1 && kib < (UINT64_MAX >> 10)) {
            *total = kib << 10;
        } else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1 && kib < (UINT64_MAX >> 10)) {
            *avail = kib << 10;
            have_avail = true;
        }
    }
    fclose(f);
    if (*total == 0)
        return NX_ERR_IO;
    if (!have_avail || *avail > *total)
        *avail = have_avail ? *total : 0; /* pre-3.14 kernels: claim nothing free */
    return NX_OK;
}

/* What <root>/stat says: online CPUs and the aggregate tick counters. */
struct stat_sample {
    uint32_t cpus;  /* "cpuN" lines; 0 when unreadable */
    uint64_t busy;  /* ticks, from the "cpu" line */
    uint64_t total; /* 0 when the "cpu" line is missing or malformed */
};

static void read_stat(const char *root, struct stat_sample *st)
{
    memset(st, 0, sizeof *st);
    FILE *f = proc_open(root, "stat");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "cpu", 3) != 0)
            continue; /* a line longer than the buffer continues on the next
                       * fgets; it cannot start with "cpu" again */
        if (line[3] >= '0' && line[3] <= '9') {
            st->cpus++;
            continue;
        }
        /* user nice system idle iowait irq softirq steal (guest is inside user) */
        unsigned long long v[8];
        if (sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) != 8)
            continue;
        uint64_t busy = 0, total = 0;
        for (int i = 0; i < 8; i++) {
            if (v[i] > (UINT64_MAX >> 4))
                return; /* absurd: ignore the line rather than overflow */
            total += v[i];
            if (i != 3 && i != 4)
                busy += v[i];
        }
        st->busy = busy;
        st->total = total;
    }
    fclose(f);
}

/*
 * Busy share since the sampler's last sample, in [0, 1]; -1 when there is no
 * usable previous sample (first call, counters reset, no time passed).
 * Updates the sampler either way.
 */
static double busy_share(struct node_cpu_sampler *s, const struct stat_sample *st)
{
    double share = -1;
    if (st->total == 0) {
        s->primed = false;
        return share;
    }
    if (s->primed && st->total > s->total_ticks && st->busy >= s->busy_ticks) {
        uint64_t dtotal = st->total - s->total_ticks, dbusy = st->busy - s->busy_ticks;
        share = dbusy >= dtotal ? 1.0 : (double)dbusy / (double)dtotal;
    }
    s->busy_ticks = st->busy;
    s->total_ticks = st->total;
    s->primed = true;
    return share;
}

/* One-minute load average; 0 (idle) when unreadable. */
static double read_load(const char *root)
{
    FILE *f = proc_open(root, "loadavg");
    if (f == NULL)
        return 0;
    double load = 0;
    if (fscanf(f, "%lf", &load) != 1 || !(load >= 0) || load > 1e6)
        load = 0;
    fclose(f);
    return load;
}

int node_resources_detect_opts(struct node_resources *r, const struct node_detect_opts *opts)
{
    static const struct node_detect_opts defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    const char *root = opts->proc_root != NULL ? opts->proc_root : "/proc";
    if (strlen(root) > NODE_PROC_ROOT_MAX)
        return NX_ERR_INVAL;
    memset(r, 0, sizeof *r);

    struct stat_sample st;
    read_stat(root, &st);
    uint32_t cpus = st.cpus;
    if (cpus == 0 && opts->proc_root == NULL) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cpus = n > 0 ? (uint32_t)n : 1;
    }
    if (cpus == 0)
        cpus = 1;
    uint64_t total = (uint64_t)cpus * 1000u;
    if (total > NODE_CPU_MILLICORES_MAX)
        total = NODE_CPU_MILLICORES_MAX;
    double share = opts->cpu_sampler != NULL ? busy_share(opts->cpu_sampler, &st) : -1;
    double used = share >= 0 ? share * (double)total : read_load(root) * 1000.0;
    uint64_t free_mc = used >= (double)total ? 0 : total - (uint64_t)used;
    uint32_t hold = opts->system_reserved_cpu_millicores;
    r->cpu_total_millicores = (uint32_t)(total > hold ? total - hold : 0);
    r->cpu_free_millicores = (uint32_t)(free_mc > hold ? free_mc - hold : 0);

    int rc = read_meminfo(root, &r->mem_total_bytes, &r->mem_free_bytes);
    if (rc != NX_OK)
        return rc;
    uint64_t mhold = opts->system_reserved_mem_bytes;
    r->mem_total_bytes = r->mem_total_bytes > mhold ? r->mem_total_bytes - mhold : 0;
    r->mem_free_bytes = r->mem_free_bytes > mhold ? r->mem_free_bytes - mhold : 0;

    if (opts->gpus > 0) {
        r->gpu_count = opts->gpus > NODE_GPUS_MAX ? NODE_GPUS_MAX : (uint32_t)opts->gpus;
        for (uint32_t i = 0; i < r->gpu_count; i++) {
            r->gpu_mem_bytes[i] = opts->gpu_mem_bytes;
            r->gpu_index[i] = i;
        }
    } else if (opts->gpus == 0) {
        gpus_from_nvml(r, opts->nvml_lib != NULL ? opts->nvml_lib : NODE_NVML_LIB);
    }
    r->gpu_total_count = r->gpu_count;
    return NX_OK;
}

int node_resources_detect(struct node_resources *r, int gpus, uint64_t gpu_mem_bytes)
{
    struct node_detect_opts opts = {.gpus = gpus, .gpu_mem_bytes = gpu_mem_bytes};
    return node_resources_detect_opts(r, &opts);
}

/* ---- reservations ------------------------------------------------------ */

void node_reserved_init(struct node_reserved *rv)
{
    memset(rv, 0, sizeof *rv);
}

int node_resources_reserve(struct node_reserved *rv, const struct node_resources *r,
                           const struct node_request *req, struct node_grant *grant)
{
    if (req->gpus > NODE_GPUS_MAX)
        return NX_ERR_INVAL;
    if (rv->cpu_millicores > r->cpu_total_millicores ||
        req->cpu_millicores > r->cpu_total_millicores - rv->cpu_millicores)
        return NX_ERR_LIMIT;
    if (rv->mem_bytes > r->mem_total_bytes || req->mem_bytes > r->mem_total_bytes - rv->mem_bytes)
        return NX_ERR_LIMIT;
    uint32_t mask = 0, picked = 0;
    for (uint32_t i = 0; i < r->gpu_count && picked < req->gpus; i++) {
        uint32_t dev = r->gpu_index[i];
        if (dev >= 32)
            continue; /* not representable in the mask: never offered */
        uint32_t bit = 1u << dev;
        if ((rv->gpu_mask & bit) || r->gpu_mem_bytes[i] < req->gpu_mem_bytes)
            continue;
        mask |= bit;
        picked++;
    }
    if (picked < req->gpus)
        return NX_ERR_LIMIT;
    rv->cpu_millicores += req->cpu_millicores;
    rv->mem_bytes += req->mem_bytes;
    rv->gpu_mask |= mask;
    rv->runs++;
    grant->cpu_millicores = req->cpu_millicores;
    grant->mem_bytes = req->mem_bytes;
    grant->gpu_mask = mask;
    return NX_OK;
}

int node_resources_release(struct node_reserved *rv, const struct node_grant *grant)
{
    if (rv->runs == 0 || grant->cpu_millicores > rv->cpu_millicores ||
        grant->mem_bytes > rv->mem_bytes || (grant->gpu_mask & ~rv->gpu_mask) != 0)
        return NX_ERR_INVAL;
    rv->cpu_millicores -= grant->cpu_millicores;
    rv->mem_bytes -= grant->mem_bytes;
    rv->gpu_mask &= ~grant->gpu_mask;
    rv->runs--;
    return NX_OK;
}

void node_resources_subtract(struct node_resources *r, const struct node_reserved *rv)
{
    uint32_t cap_cpu = rv->cpu_millicores < r->cpu_total_millicores
                           ? r->cpu_total_millicores - rv->cpu_millicores
                           : 0;
    if (r->cpu_free_millicores > cap_cpu)
        r->cpu_free_millicores = cap_cpu;
    uint64_t cap_mem = rv->mem_bytes < r->mem_total_bytes ? r->mem_total_bytes - rv->mem_bytes : 0;
    if (r->mem_free_bytes > cap_mem)
        r->mem_free_bytes = cap_mem;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < r->gpu_count; i++) {
        uint32_t dev = r->gpu_index[i];
        if (dev < 32 && (rv->gpu_mask & (1u << dev)))
            continue;
        r->gpu_mem_bytes[kept] = r->gpu_mem_bytes[i];
        r->gpu_index[kept] = dev;
        kept++;
    }
    r->gpu_count = kept;
}
