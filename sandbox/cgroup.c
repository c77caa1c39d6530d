/*
 * cgroup.c - what the v1 and v2 cgroup code share: finding which version is
 * mounted, this process's own group, small file helpers, and the dispatch
 * to cgroup_v1.c or cgroup_v2.c.
 *
 * Every run gets its own group under <own group>/nexus-sbx/<run name>, so a
 * node that itself runs inside a limited group (a container, a systemd
 * slice) keeps its agents inside its own limits instead of escaping to the
 * root of the hierarchy.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/cgroup_impl.h"

void sbx_errf(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

int sbx_write_file(const char *dir, const char *file, const char *text)
{
    char path[SBX_PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path)
        return NX_ERR_TOO_BIG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return NX_ERR_IO;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : NX_ERR_IO;
}

int sbx_read_file(const char *dir, const char *file, char *buf, size_t cap)
{
    char path[SBX_PATH_MAX];
    if (cap == 0 || (size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path)
        return NX_ERR_TOO_BIG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NX_ERR_IO;
    size_t off = 0;
    while (off + 1 < cap) {
        ssize_t n = read(fd, buf + off, cap - 1 - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    buf[off] = '\0';
    return 0;
}

bool sbx_kv_find(const char *text, const char *key, uint64_t *value)
{
    size_t klen = strlen(key);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            unsigned long long v;
            if (sscanf(p + klen + 1, "%llu", &v) == 1) {
                *value = v;
                return true;
            }
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

/* Reads one "<digits>" file into *v. */
int cg_read_u64(const char *dir, const char *file, uint64_t *v)
{
    char buf[64];
    int rc = sbx_read_file(dir, file, buf, sizeof buf);
    if (rc < 0)
        return rc;
    unsigned long long x;
    if (sscanf(buf, "%llu", &x) != 1)
        return NX_ERR_DECODE;
    *v = x;
    return 0;
}

static bool file_exists(const char *root, const char *rel)
{
    char path[SBX_PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", root, rel) >= sizeof path)
        return false;
    return access(path, F_OK) == 0;
}

static bool word_in(const char *list, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += wl) {
        bool start = p == list || p[-1] == ' ' || p[-1] == ',';
        bool end = p[wl] == '\0' || p[wl] == ' ' || p[wl] == '\n' || p[wl] == ',';
        if (start && end)
            return true;
    }
    return false;
}

enum sbx_cg_version sbx_cgroup_detect(const char *root)
{
    if (!root)
        root = SBX_CG_DEFAULT_ROOT;
    char buf[512];
    if (sbx_read_file(root, "cgroup.controllers", buf, sizeof buf) == 0 && word_in(buf, "memory") &&
        word_in(buf, "cpu") && word_in(buf, "pids"))
        return SBX_CG_V2;
    if (file_exists(root, "memory/tasks"))
        return SBX_CG_V1;
    return SBX_CG_NONE;
}

int cg_own_path(const char *controller, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return NX_ERR_IO;
    char line[SBX_PATH_MAX + 64];
    int rc = NX_ERR_NOT_FOUND;
    while (fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        char *ctrls = c1 + 1, *path = c2 + 1;
        path[strcspn(path, "\n")] = '\0';
        bool match = controller ? word_in(ctrls, controller)
                                : (c1 == line + 1 && line[0] == '0' && *ctrls == '\0');
        if (!match)
            continue;
        rc = (size_t)snprintf(out, cap, "%s", path) < cap ? 0 : NX_ERR_TOO_BIG;
        break;
    }
    fclose(f);
    return rc;
}

/*
 * Removes run-<pid>-<n> groups under mid whose creating process is gone (a
 * node that crashed, a test that was killed). rmdir refuses a group that
 * still holds tasks, so a live run is never touched; a recycled pid only
 * delays the sweep of its group.
 */
static void sweep_stale(const char *mid)
{
    DIR *d = opendir(mid);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int pid;
        unsigned n;
        if (sscanf(e->d_name, "run-%d-%u", &pid, &n) != 2 || pid <= 0 || pid == getpid())
            continue;
        if (kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[SBX_PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", mid, e->d_name) < sizeof path &&
            rmdir(path) == 0)
            NX_INFO("sbx_cgroup_swept", "dir=%s", path);
    }
    closedir(d);
}

int cg_mkdir_group(const char *base, const char *parent, const char *name, bool sweep, char *dir,
                   size_t cap)
{
    char mid[SBX_PATH_MAX];
    if ((size_t)snprintf(mid, sizeof mid, "%s/%s/nexus-sbx", base, parent) >= sizeof mid)
        return NX_ERR_TOO_BIG;
    if (mkdir(mid, 0755) < 0 && errno != EEXIST)
        return NX_ERR_IO;
    if (sweep)
        sweep_stale(mid);
    if ((size_t)snprintf(dir, cap, "%s/%s", mid, name) >= cap)
        return NX_ERR_TOO_BIG;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return NX_ERR_IO;
    return 0;
}

int cg_rmdir_retry(const char *dir)
{
    if (dir[0] == '\0')
        return 0;
    for (int i = 0; i < 200; i++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return NX_ERR_IO;
        usleep(500);
    }
    return NX_ERR_IO;
}

int sbx_cgroup_create(struct sbx_cgroup *cg, enum sbx_cg_version version, const char *root,
                      const char *parent, const char *name, const struct sbx_limits *lim,
                      uint32_t weaken, char *err, size_t err_len)
{
    memset(cg, 0, sizeof *cg);
    cg->version = version;
    if (!root)
        root = SBX_CG_DEFAULT_ROOT;
    switch (version) {
    case SBX_CG_V1:
        return cg_v1_create(cg, root, parent, name, lim, weaken, err, err_len);
    case SBX_CG_V2:
        return cg_v2_create(cg, root, parent, name, lim, weaken, err, err_len);
    default:
        return 0;
    }
}

int sbx_cgroup_add_pid(const struct sbx_cgroup *cg, pid_t pid, char *err, size_t err_len)
{
    char text[32];
    snprintf(text, sizeof text, "%d", (int)pid);
    for (int c = 0; c < SBX_CG__COUNT; c++) {
        if (cg->dir[c][0] == '\0')
            continue;
        if (sbx_write_file(cg->dir[c], "cgroup.procs", text) < 0) {
            sbx_errf(err, err_len, "cgroup: move pid into %s: %s", cg->dir[c], strerror(errno));
            return NX_ERR_IO;
        }
    }
    return 0;
}

int sbx_cgroup_read_usage(const struct sbx_cgroup *cg, struct sbx_usage *u)
{
    switch (cg->version) {
    case SBX_CG_V1:
        return cg_v1_usage(cg, u);
    case SBX_CG_V2:
        return cg_v2_usage(cg, u);
    default:
        return 0;
    }
}

void sbx_cgroup_kill(const struct sbx_cgroup *cg)
{
    if (cg->version == SBX_CG_V2 && cg->dir[0][0] != '\0' &&
        sbx_write_file(cg->dir[0], "cgroup.kill", "1") < 0)
        NX_DEBUG("sbx_cgroup_kill", "dir=%s errno=%d", cg->dir[0], errno);
}

int sbx_cgroup_destroy(struct sbx_cgroup *cg)
{
    int rc = 0;
    for (int c = 0; c < SBX_CG__COUNT; c++) {
        if (cg_rmdir_retry(cg->dir[c]) < 0) {
            NX_WARN("sbx_cgroup_rmdir_failed", "dir=%s errno=%d", cg->dir[c], errno);
            rc = NX_ERR_IO;
        }
        cg->dir[c][0] = '\0';
    }
    return rc;
}
