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

/* ---- cgroup limits -------------------------------------------------------- */

/* cgroup v1 reports "no limit" as about 2^63 rounded down to a page. */
#define CGROUP_UNLIMITED (1ull << 62)
#define CGROUP_DIR_MAX (NODE_PROC_ROOT_MAX + 16 + NODE_CGROUP_PATH_MAX)

/* Our place in each hierarchy, from <proc>/self/cgroup; "" when absent. */
struct cg_paths {
    char mem_v1[NODE_CGROUP_PATH_MAX];
    char cpu_v1[NODE_CGROUP_PATH_MAX];
    char v2[NODE_CGROUP_PATH_MAX];
};

/* The tightest limits found; UINT64_MAX when none. */
struct cg_limits {
    uint64_t cpu_millicores;
    uint64_t mem_bytes;
    uint64_t mem_free_bytes;
};

static bool has_token(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, tok, n) == 0)
            return true;
        if (e == NULL)
            return false;
        p = e + 1;
    }
}

static void set_path(char *out, const char *path)
{
    snprintf(out, NODE_CGROUP_PATH_MAX, "%s", path);
}

static void read_cgroup_paths(const char *proc_root, struct cg_paths *cg)
{
    memset(cg, 0, sizeof *cg);
    FILE *f = proc_open(proc_root, "self/cgroup");
    if (f == NULL)
        return;
    char line[NODE_CGROUP_PATH_MAX + 128];
    while (fgets(line, sizeof line, f)) {
        char *nl = strchr(line, '\n');
        if (nl == NULL && !feof(f)) {
            int c; /* too long for us: skip the rest of the line */
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            continue;
        }
        if (nl != NULL)
            *nl = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (path[0] != '/' || strlen(path) >= NODE_CGROUP_PATH_MAX || strstr(path, "/..") != NULL)
            continue;
        if (ctrls[0] == '\0') {
            set_path(cg->v2, path);
            continue;
        }
        if (has_token(ctrls, "memory"))
            set_path(cg->mem_v1, path);
        if (has_token(ctrls, "cpu"))
            set_path(cg->cpu_v1, path);
    }
    fclose(f);
}

/* First line of dir/name into buf; false when unreadable. */
static bool read_line(const char *dir, const char *name, char *buf, size_t cap)
{
    char path[CGROUP_DIR_MAX + 32];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return false;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    return ok;
}

/* A byte count, or UINT64_MAX for "max"; false when unreadable or malformed. */
static bool read_bytes(const char *dir, const char *name, uint64_t *out)
{
    char buf[64];
    unsigned long long v;
    if (!read_line(dir, name, buf, sizeof buf))
        return false;
    if (strncmp(buf, "max", 3) == 0) {
        *out = UINT64_MAX;
        return true;
    }
    if (buf[0] < '0' || buf[0] > '9' || sscanf(buf, "%llu", &v) != 1)
        return false;
    *out = v;
    return true;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* A memory limit with its usage at one level of the hierarchy. */
static void note_memory(struct cg_limits *lim, const char *dir, const char *limit_file,
                        const char *usage_file)
{
    uint64_t limit, usage;
    if (!read_bytes(dir, limit_file, &limit) || limit >= CGROUP_UNLIMITED)
        return;
    lim->mem_bytes = min_u64(lim->mem_bytes, limit);
    if (read_bytes(dir, usage_file, &usage))
        lim->mem_free_bytes = min_u64(lim->mem_free_bytes, usage < limit ? limit - usage : 0);
}

static void note_quota(struct cg_limits *lim, long long quota_us, long long period_us)
{
    if (quota_us > 0 && period_us > 0 && quota_us < (1ll << 40))
        lim->cpu_millicores =
            min_u64(lim->cpu_millicores, (uint64_t)quota_us * 1000u / (uint64_t)period_us);
}

enum cg_kind { CG_MEM_V1, CG_CPU_V1, CG_V2 };

static void visit(struct cg_limits *lim, enum cg_kind kind, const char *dir)
{
    char buf[64];
    long long quota = 0, period = 0;
    switch (kind) {
    case CG_MEM_V1:
        note_memory(lim, dir, "memory.limit_in_bytes", "memory.usage_in_bytes");
        break;
    case CG_CPU_V1:
        if (read_line(dir, "cpu.cfs_quota_us", buf, sizeof buf) &&
            sscanf(buf, "%lld", &quota) == 1 &&
            read_line(dir, "cpu.cfs_period_us", buf, sizeof buf) &&
            sscanf(buf, "%lld", &period) == 1)
            note_quota(lim, quota, period);
        break;
    case CG_V2:
        note_memory(lim, dir, "memory.max", "memory.current");
        if (read_line(dir, "cpu.max", buf, sizeof buf) &&
            sscanf(buf, "%lld %lld", &quota, &period) == 2) /* "max 100000" does not parse */
            note_quota(lim, quota, period);
        break;
    }
}

/* Visits <mount><path> and every ancestor up to <mount>: limits nest. */
static void walk_up(struct cg_limits *lim, enum cg_kind kind, const char *mount, const char *path)
{
    char rel[NODE_CGROUP_PATH_MAX];
    set_path(rel, path);
    for (;;) {
        char dir[CGROUP_DIR_MAX];
        snprintf(dir, sizeof dir, "%s%s", mount, strcmp(rel, "/") == 0 ? "" : rel);
        visit(lim, kind, dir);
        if (strcmp(rel, "/") == 0)
            break;
        char *slash = strrchr(rel, '/');
        if (slash == NULL)
            break;
        if (slash == rel)
            rel[1] = '\0';
        else
            *slash = '\0';
    }
}

static void read_cgroup_limits(const char *proc_root, const char *cg_root, struct cg_limits *lim)
{
    lim->cpu_millicores = lim->mem_bytes = lim->mem_free_bytes = UINT64_MAX;
    if (cg_root[0] == '\0' || strlen(cg_root) > NODE_PROC_ROOT_MAX)
        return;
    struct cg_paths cg;
    read_cgroup_paths(proc_root, &cg);
    char mount[CGROUP_DIR_MAX];
    if (cg.mem_v1[0] != '\0') {
        snprintf(mount, sizeof mount, "%s/memory", cg_root);
        walk_up(lim, CG_MEM_V1, mount, cg.mem_v1);
    }
    if (cg.cpu_v1[0] != '\0') {
        snprintf(mount, sizeof mount, "%s/cpu", cg_root);
        walk_up(lim, CG_CPU_V1, mount, cg.cpu_v1);
    }
    if (cg.v2[0] != '\0') {
        /* unified at the root (v2 only), or under unified/ (hybrid) */
        char probe[CGROUP_DIR_MAX + 32];
        snprintf(probe, sizeof probe, "%s/cgroup.controllers", cg_root);
        snprintf(mount, sizeof mount, access(probe, F_OK) == 0 ? "%s" : "%s/unified", cg_root);
        walk_up(lim, CG_V2, mount, cg.v2);
    }
}

/* CPU total and free in millicores, before cgroup limits and the system reserve. */
static void detect_cpu(const char *root, bool real_proc, struct node_cpu_sampler *sampler,
                       uint64_t *total_out, uint64_t *free_out)
{
    struct stat_sample st;
    read_stat(root, &st);
    uint32_t cpus = st.cpus;
    if (cpus == 0 && real_proc) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cpus = n > 0 ? (uint32_t)n : 1;
    }
    if (cpus == 0)
        cpus = 1;
    uint64_t total = min_u64((uint64_t)cpus * 1000u, NODE_CPU_MILLICORES_MAX);
    double share = sampler != NULL ? busy_share(sampler, &st) : -1;
    double used = share >= 0 ? share * (double)total : read_load(root) * 1000.0;
    *total_out = total;
    *free_out = used >= (double)total ? 0 : total - (uint64_t)used;
}

static uint64_t minus(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
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

    uint64_t cpu_total, cpu_free;
    detect_cpu(root, opts->proc_root == NULL, opts->cpu_sampler, &cpu_total, &cpu_free);
    int rc = read_meminfo(root, &r->mem_total_bytes, &r->mem_free_bytes);
    if (rc != NX_OK)
        return rc;

    struct cg_limits lim;
    read_cgroup_limits(root, opts->cgroup_root != NULL ? opts->cgroup_root : "/sys/fs/cgroup",
                       &lim);
    r->cgroup_limited = lim.cpu_millicores < cpu_total || lim.mem_bytes < r->mem_total_bytes;
    cpu_total = min_u64(cpu_total, lim.cpu_millicores);
    cpu_free = min_u64(cpu_free, cpu_total);
    r->mem_total_bytes = min_u64(r->mem_total_bytes, lim.mem_bytes);
    r->mem_free_bytes = min_u64(min_u64(r->mem_free_bytes, lim.mem_free_bytes), r->mem_total_bytes);

    if (opts->cpu_override_millicores > 0)
        cpu_total = cpu_free = min_u64(opts->cpu_override_millicores, NODE_CPU_MILLICORES_MAX);
    if (opts->mem_override_bytes > 0)
        r->mem_total_bytes = r->mem_free_bytes = opts->mem_override_bytes;
    r->cpu_total_millicores = (uint32_t)minus(cpu_total, opts->system_reserved_cpu_millicores);
    r->cpu_free_millicores = (uint32_t)minus(cpu_free, opts->system_reserved_cpu_millicores);
    r->mem_total_bytes = minus(r->mem_total_bytes, opts->system_reserved_mem_bytes);
    r->mem_free_bytes = minus(r->mem_free_bytes, opts->system_reserved_mem_bytes);

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
