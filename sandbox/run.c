/*
 * run.c - one isolated agent process: the plan, the parent's side, and the
 * child's fixed sequence of steps.
 *
 * As in crun and bubblewrap, the parent first builds a plan (paths, argv,
 * environment, limits, the seccomp program, pipes, the cgroup) and only
 * then clones; the child carries the plan out in a fixed order and never
 * allocates. A failing step is reported to the parent over a CLOEXEC
 * socketpair as errno plus a message; end-of-file on that socket means the
 * execve succeeded.
 *
 * Child steps, in order (each one names itself in an error):
 *   1. stdio: dup2 the pipes onto 0, 1, 2
 *   2. wait for "go": the parent has moved us into the cgroup, then
 *      unshare(CLONE_NEWCGROUP) so /proc/self/cgroup shows "/"
 *   3. PR_SET_NO_NEW_PRIVS (early: nothing later can gain privileges)
 *   4. mounts: / made private; a tmpfs new root with read-only, nosuid,
 *      nodev binds of /usr (and /lib*, /bin, /sbin as binds or the host's
 *      symlinks), a few /etc files, the bundle at /agent, a size-limited
 *      /tmp, /dev/{null,zero,random,urandom}, a fresh /proc of the new PID
 *      namespace; the new root remounted read-only; pivot_root and the old
 *      root detached
 *   5. hostname "agent", rlimits (NOFILE, NPROC, CORE=0, FSIZE)
 *   6. capabilities out of the bounding and ambient sets
 *   7. seccomp filter (before the uid change, so it loads even if
 *      no_new_privs were off; nothing after it is on the deny list)
 *   8. setgroups(0), setresgid, setresuid to the unprivileged ids, capset 0
 *   9. PR_SET_PDEATHSIG (after the uid change, which clears it)
 *  10. every fd but 0, 1, 2 marked close-on-exec (close_range)
 *  11. execve by path (no fd-based exec, no /proc/self/fd path)
 *
 * The child never calls a libc function that takes a lock or allocates:
 * the parent may be threaded (RocksDB, the loop's helpers) and clone()
 * copies only the calling thread.
 *
 * The agent is PID 1 of its PID namespace: killing it makes the kernel kill
 * every other process in the namespace, which is how the timeout ends a run.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/internal.h"

#define STAGE_DIR "/run/nexus-sbx-root" /* mount point of new roots (in each run's namespace) */
#define ENV_MAX 16
#define ETC_FILES_MAX 16
#define SBX_SETUP_TIMEOUT_MS 10000 /* clone to execve; normally a few ms */

/* What the child needs, prepared by the parent. Everything is inline or
 * borrowed from memory the child has a copy of. */
struct plan {
    unsigned long clone_flags;
    char bundle[SBX_PATH_MAX];
    char exec_path[SBX_PATH_MAX];
    const char *argv[SBX_ARGV_MAX + 1];
    const char *envp[ENV_MAX + 1];
    char tmp_opts[64];
    struct sbx_limits lim;
    uint32_t uid, gid, weaken;
    const struct sock_fprog *prog;
    const struct sbx_bind *binds;
    size_t binds_len;
    int sock;               /* child end of the report socket */
    int in_r, out_w, err_w; /* agent stdio */
};

struct report {
    int err_no;
    char msg[SBX_ERR_MAX];
};

static const char *const default_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
                                          "HOME=/tmp",
                                          "TMPDIR=/tmp",
                                          "LANG=C.UTF-8",
                                          "NEXUS_AGENT_DIR=/agent",
                                          NULL};

/* Runtime directories: bound read-only when a directory, recreated when a symlink. */
static const char *const runtime_dirs[] = {"/usr",   "/bin",   "/sbin", "/lib",
                                           "/lib64", "/lib32", NULL};

/*
 * The /etc files a dynamically linked runtime and name lookups need. The
 * whole /etc is not bound: it holds host configuration and secrets an agent
 * has no business reading (root-only files stay unreadable to the agent's
 * uid anyway, but less visible is less to audit). See docs/sandbox.md.
 */
static const char *const etc_files[ETC_FILES_MAX] = {
    "ld.so.cache", "ld.so.conf",  "ld.so.conf.d", "passwd",       "group", "nsswitch.conf", "hosts",
    "host.conf",   "resolv.conf", "localtime",    "alternatives", "ssl",   "mime.types",    NULL};

static const char *const dev_nodes[] = {"null", "zero", "random", "urandom", NULL};

/* ---- child ---------------------------------------------------------------- */

static _Noreturn void child_fail(const struct plan *p, const char *step, const char *detail)
{
    struct report r = {.err_no = errno};
    snprintf(r.msg, sizeof r.msg, "%s%s%s", step, detail ? " " : "", detail ? detail : "");
    ssize_t n = write(p->sock, &r, sizeof r);
    (void)n;
    _exit(127);
}

static void child_path(char *out, const char *rel)
{
    snprintf(out, SBX_PATH_MAX, "%s%s", STAGE_DIR, rel);
}

/* Binds src onto dst (created as file or dir like src), then remounts with flags. */
static void bind_at(const struct plan *p, const char *src, const char *dst, unsigned long flags)
{
    struct stat st;
    if (stat(src, &st) < 0)
        child_fail(p, "bind: stat", src);
    if (S_ISDIR(st.st_mode)) {
        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
            child_fail(p, "bind: mkdir", dst);
    } else {
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            child_fail(p, "bind: create", dst);
        close(fd);
    }
    if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
        child_fail(p, "bind: mount", src);
    if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | flags, NULL) < 0)
        child_fail(p, "bind: remount", dst);
}

/* mkdir -p for a path inside the new root (abs is absolute inside the sandbox). */
static void mkdirs_in_root(const struct plan *p, const char *abs)
{
    char path[SBX_PATH_MAX];
    child_path(path, abs);
    for (char *s = path + strlen(STAGE_DIR) + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            child_fail(p, "mkdir", path);
        *s = '/';
    }
}

static void build_root(const struct plan *p)
{
    const unsigned long ro = MS_RDONLY | MS_NOSUID | MS_NODEV;
    const unsigned long runtime_flags = (p->weaken & SBX_WEAKEN_RO) ? MS_NOSUID | MS_NODEV : ro;
    char dst[SBX_PATH_MAX], src[SBX_PATH_MAX];

    if (mount("tmpfs", STAGE_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        child_fail(p, "mount: root tmpfs", STAGE_DIR);
    for (const char *const *d = runtime_dirs; *d; d++) {
        struct stat st;
        if (lstat(*d, &st) < 0)
            continue;
        child_path(dst, *d);
        if (S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(*d, src, sizeof src - 1);
            if (n < 0)
                child_fail(p, "readlink", *d);
            src[n] = '\0';
            if (symlink(src, dst) < 0)
                child_fail(p, "symlink", dst);
        } else if (S_ISDIR(st.st_mode)) {
            bind_at(p, *d, dst, runtime_flags);
        }
    }
    child_path(dst, "/etc");
    if (mkdir(dst, 0755) < 0)
        child_fail(p, "mkdir", dst);
    for (const char *const *f = etc_files; *f; f++) {
        snprintf(src, sizeof src, "/etc/%s", *f);
        if (access(src, F_OK) < 0)
            continue;
        snprintf(dst, sizeof dst, "%s/etc/%s", STAGE_DIR, *f);
        bind_at(p, src, dst, ro);
    }
    for (size_t i = 0; i < p->binds_len; i++) {
        mkdirs_in_root(p, p->binds[i].sandbox_path);
        child_path(dst, p->binds[i].sandbox_path);
        bind_at(p, p->binds[i].host_path, dst, runtime_flags);
    }

    unsigned long bundle_flags = MS_NODEV;
    if (!(p->weaken & SBX_WEAKEN_RO))
        bundle_flags |= MS_RDONLY;
    if (!(p->weaken & SBX_WEAKEN_NOSUID))
        bundle_flags |= MS_NOSUID;
    child_path(dst, "/agent");
    bind_at(p, p->bundle, dst, bundle_flags);

    child_path(dst, "/tmp");
    if (mkdir(dst, 01777) < 0 ||
        mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, p->tmp_opts) < 0)
        child_fail(p, "mount: /tmp tmpfs", p->tmp_opts);

    child_path(dst, "/dev");
    if (mkdir(dst, 0755) < 0)
        child_fail(p, "mkdir", dst);
    for (const char *const *d = dev_nodes; *d; d++) {
        snprintf(src, sizeof src, "/dev/%s", *d);
        snprintf(dst, sizeof dst, "%s/dev/%s", STAGE_DIR, *d);
        bind_at(p, src, dst, MS_NOSUID | MS_NOEXEC);
    }
    static const char *const dev_links[][2] = {{"/proc/self/fd", "fd"},
                                               {"/proc/self/fd/0", "stdin"},
                                               {"/proc/self/fd/1", "stdout"},
                                               {"/proc/self/fd/2", "stderr"}};
    for (size_t i = 0; i < NX_ARRAY_LEN(dev_links); i++) {
        snprintf(dst, sizeof dst, "%s/dev/%s", STAGE_DIR, dev_links[i][1]);
        if (symlink(dev_links[i][0], dst) < 0)
            child_fail(p, "symlink", dst);
    }

    child_path(dst, "/proc");
    if (mkdir(dst, 0555) < 0 ||
        mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        child_fail(p, "mount: /proc", NULL);

    if (mount(NULL, STAGE_DIR, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
              "mode=0755,size=1m") < 0)
        child_fail(p, "mount: root read-only", NULL);
    if (chdir(STAGE_DIR) < 0)
        child_fail(p, "chdir: new root", NULL);
    /* pivot_root(".", ".") stacks the old root under the new one; detach it. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        child_fail(p, "pivot_root", NULL);
    if (umount2(".", MNT_DETACH) < 0)
        child_fail(p, "umount old root", NULL);
    if (chdir("/") < 0)
        child_fail(p, "chdir /", NULL);
}

static void set_rlimit(const struct plan *p, int res, uint64_t v, const char *name)
{
    struct rlimit rl = {.rlim_cur = v, .rlim_max = v};
    if (setrlimit(res, &rl) < 0)
        child_fail(p, "setrlimit", name);
}

static void drop_caps(const struct plan *p)
{
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break; /* past the last capability this kernel knows */
            child_fail(p, "capbset drop", NULL);
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        child_fail(p, "ambient caps clear", NULL);
}

static void zero_caps(const struct plan *p)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) < 0)
        child_fail(p, "capset", NULL);
}

static _Noreturn void child_main(const struct plan *p)
{
    char go;
    /* Dies with the parent during setup; set again after the uid change. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail(p, "pdeathsig", NULL);
    if (dup2(p->in_r, 0) < 0 || dup2(p->out_w, 1) < 0 || dup2(p->err_w, 2) < 0)
        child_fail(p, "stdio: dup2", NULL);
    if (read(p->sock, &go, 1) != 1)
        _exit(127); /* the parent gave up on us */
    if (p->clone_flags & CLONE_NEWCGROUP) {
        if (unshare(CLONE_NEWCGROUP) < 0)
            child_fail(p, "unshare: cgroup namespace", NULL);
    }
    if (!(p->weaken & SBX_WEAKEN_NNP) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(p, "no_new_privs", NULL);

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail(p, "mount: make / private", NULL);
    if (!(p->weaken & SBX_WEAKEN_PIVOT))
        build_root(p);

    if (sethostname("agent", 5) < 0)
        child_fail(p, "sethostname", NULL);
    set_rlimit(p, RLIMIT_CORE, 0, "CORE");
    set_rlimit(p, RLIMIT_NOFILE, p->lim.nofile, "NOFILE");
    set_rlimit(p, RLIMIT_FSIZE, p->lim.fsize_bytes, "FSIZE");
    if (!(p->weaken & SBX_WEAKEN_NPROC))
        set_rlimit(p, RLIMIT_NPROC, p->lim.nproc, "NPROC");

    if (!(p->weaken & SBX_WEAKEN_CAPS))
        drop_caps(p);
    if (!(p->weaken & SBX_WEAKEN_SECCOMP) &&
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p->prog, 0, 0) < 0)
        child_fail(p, "seccomp: load", NULL);
    /* Raw syscalls: glibc's wrappers broadcast the change to every thread
     * it believes exists, and after a raw clone() of a threaded parent those
     * threads do not exist here, so the wrapper would wait forever. */
    if (!(p->weaken & SBX_WEAKEN_UID)) {
        if (syscall(SYS_setgroups, 0, NULL) < 0)
            child_fail(p, "setgroups", NULL);
        if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
            child_fail(p, "setresgid", NULL);
        if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
            child_fail(p, "setresuid", NULL);
    }
    if (!(p->weaken & SBX_WEAKEN_CAPS))
        zero_caps(p);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail(p, "pdeathsig", NULL);
    if (!(p->weaken & SBX_WEAKEN_CLOSE_FDS) && close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
        child_fail(p, "close_range", NULL);
    execve(p->exec_path, (char *const *)p->argv, (char *const *)p->envp);
    child_fail(p, "execve", p->exec_path);
}

/* ---- parent ------------------------------------------------------------------ */

static bool has_dotdot(const char *path)
{
    for (const char *s = path; (s = strstr(s, "..")) != NULL; s += 2) {
        bool start = s == path || s[-1] == '/';
        bool end = s[2] == '\0' || s[2] == '/';
        if (start && end)
            return true;
    }
    return false;
}

static int make_plan(const struct sbx_config *cfg, struct plan *p, char *err, size_t err_len)
{
    memset(p, 0, sizeof *p);
    if (!cfg->bundle_dir || !cfg->argv || !cfg->argv[0]) {
        sbx_errf(err, err_len, "plan: bundle_dir and argv are required");
        return NX_ERR_INVAL;
    }
    if (!realpath(cfg->bundle_dir, p->bundle)) {
        sbx_errf(err, err_len, "plan: bundle %s: %s", cfg->bundle_dir, strerror(errno));
        return NX_ERR_INVAL;
    }
    struct stat st;
    if (stat(p->bundle, &st) < 0 || !S_ISDIR(st.st_mode)) {
        sbx_errf(err, err_len, "plan: bundle %s is not a directory", p->bundle);
        return NX_ERR_INVAL;
    }
    if (!(cfg->weaken & SBX_WEAKEN_UID) && st.st_uid != cfg->uid &&
        (st.st_mode & (S_IROTH | S_IXOTH)) != (S_IROTH | S_IXOTH)) {
        sbx_errf(err, err_len, "plan: bundle %s is not readable by uid %u (chmod o+rx)", p->bundle,
                 cfg->uid);
        return NX_ERR_PERM;
    }
    const char *entry = cfg->argv[0];
    if (has_dotdot(entry)) {
        sbx_errf(err, err_len, "plan: entrypoint %s: must not contain ..", entry);
        return NX_ERR_INVAL;
    }
    int n = entry[0] == '/' ? snprintf(p->exec_path, sizeof p->exec_path, "%s", entry)
                            : snprintf(p->exec_path, sizeof p->exec_path, "/agent/%s", entry);
    if ((size_t)n >= sizeof p->exec_path) {
        sbx_errf(err, err_len, "plan: entrypoint path too long");
        return NX_ERR_TOO_BIG;
    }
    size_t argc = 0;
    p->argv[argc++] = p->exec_path;
    for (size_t i = 1; cfg->argv[i]; i++) {
        if (argc >= SBX_ARGV_MAX) {
            sbx_errf(err, err_len, "plan: more than %d entrypoint words", SBX_ARGV_MAX);
            return NX_ERR_TOO_BIG;
        }
        p->argv[argc++] = cfg->argv[i];
    }
    const char *const *env = cfg->envp ? cfg->envp : default_env;
    for (size_t i = 0; env[i]; i++) {
        if (i >= ENV_MAX) {
            sbx_errf(err, err_len, "plan: more than %d environment entries", ENV_MAX);
            return NX_ERR_TOO_BIG;
        }
        p->envp[i] = env[i];
    }
    if (cfg->extra_binds_len > SBX_EXTRA_BINDS_MAX) {
        sbx_errf(err, err_len, "plan: more than %d extra binds", SBX_EXTRA_BINDS_MAX);
        return NX_ERR_TOO_BIG;
    }
    for (size_t i = 0; i < cfg->extra_binds_len; i++) {
        const char *sp = cfg->extra_binds[i].sandbox_path;
        if (!sp || sp[0] != '/' || has_dotdot(sp) || strlen(sp) + sizeof STAGE_DIR >= 256) {
            sbx_errf(err, err_len, "plan: extra bind %zu: bad sandbox path", i);
            return NX_ERR_INVAL;
        }
    }
    p->binds = cfg->extra_binds;
    p->binds_len = cfg->extra_binds_len;
    p->lim = cfg->limits;
    if (p->lim.nofile == 0)
        p->lim.nofile = SBX_DEFAULT_NOFILE;
    if (p->lim.nproc == 0)
        p->lim.nproc = SBX_DEFAULT_NPROC;
    if (p->lim.fsize_bytes == 0)
        p->lim.fsize_bytes = SBX_DEFAULT_FSIZE_BYTES;
    uint64_t tmp = p->lim.tmp_bytes ? p->lim.tmp_bytes : SBX_DEFAULT_TMP_BYTES;
    if (cfg->weaken & SBX_WEAKEN_TMP_SIZE)
        snprintf(p->tmp_opts, sizeof p->tmp_opts, "mode=1777");
    else
        snprintf(p->tmp_opts, sizeof p->tmp_opts, "mode=1777,size=%llu,nr_inodes=4096",
                 (unsigned long long)tmp);
    p->uid = cfg->uid;
    p->gid = cfg->gid;
    p->weaken = cfg->weaken;
    p->clone_flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    if (!(cfg->weaken & SBX_WEAKEN_PIDNS))
        p->clone_flags |= CLONE_NEWPID;
    if (!cfg->allow_network && !(cfg->weaken & SBX_WEAKEN_NETNS))
        p->clone_flags |= CLONE_NEWNET;
    if (!cfg->no_cgroup)
        p->clone_flags |= CLONE_NEWCGROUP; /* unshared by the child after the move */
    return sbx_seccomp_program(&p->prog, err, err_len);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

void sbx_config_init(struct sbx_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->uid = SBX_DEFAULT_UID;
    cfg->gid = SBX_DEFAULT_GID;
    cfg->stderr_fd = -1;
    cfg->limits = (struct sbx_limits){.cpu_millicores = SBX_DEFAULT_CPU_MILLICORES,
                                      .memory_bytes = SBX_DEFAULT_MEMORY_BYTES,
                                      .pids_max = SBX_DEFAULT_PIDS_MAX,
                                      .tmp_bytes = SBX_DEFAULT_TMP_BYTES,
                                      .timeout_ms = SBX_DEFAULT_TIMEOUT_MS,
                                      .nofile = SBX_DEFAULT_NOFILE,
                                      .nproc = SBX_DEFAULT_NPROC,
                                      .fsize_bytes = SBX_DEFAULT_FSIZE_BYTES};
}

void sbx_config_from_manifest(struct sbx_config *cfg, const struct sbx_manifest *m,
                              bool network_granted)
{
    cfg->argv = (const char *const *)m->entrypoint;
    cfg->limits.cpu_millicores = m->cpu_millicores;
    cfg->limits.memory_bytes = m->memory_bytes;
    cfg->limits.timeout_ms = m->timeout_ms;
    cfg->allow_network = m->network && network_granted;
}

static atomic_uint g_run_counter;

static int start_cgroup(const struct sbx_config *cfg, struct sbx_run *run, char *err,
                        size_t err_len)
{
    if (cfg->no_cgroup)
        return 0;
    enum sbx_cg_version v = sbx_cgroup_detect(cfg->cgroup_root);
    if (v == SBX_CG_NONE) {
        sbx_errf(err, err_len, "cgroup: neither v1 nor v2 controllers are mounted");
        return NX_ERR_UNAVAILABLE;
    }
    char name[64];
    snprintf(name, sizeof name, "run-%d-%u", (int)getpid(), atomic_fetch_add(&g_run_counter, 1));
    return sbx_cgroup_create(&run->cg, v, cfg->cgroup_root, cfg->cgroup_parent, name, &cfg->limits,
                             cfg->weaken, err, err_len);
}

/* Both ends close-on-exec: the child's dup2 onto 0-2 clears the flag on the copy. */
static int make_pipe(int fds[2])
{
    return pipe2(fds, O_CLOEXEC) < 0 ? NX_ERR_IO : 0;
}

int sbx_run_start(const struct sbx_config *cfg, struct sbx_run **out, char *err, size_t err_len)
{
    struct plan p;
    int rc = make_plan(cfg, &p, err, err_len);
    if (rc < 0)
        return rc;
    if (cfg->weaken)
        NX_WARN("sbx_weakened_run", "weaken=0x%x", cfg->weaken);
    if (mkdir(STAGE_DIR, 0700) < 0 && errno != EEXIST) {
        sbx_errf(err, err_len, "plan: mkdir %s: %s", STAGE_DIR, strerror(errno));
        return NX_ERR_IO;
    }
    struct sbx_run *run = calloc(1, sizeof *run);
    if (!run)
        return NX_ERR_NOMEM;
    run->pid = -1;
    run->pidfd = run->stdin_w = run->stdout_r = run->stderr_r = -1;
    run->weaken = cfg->weaken;
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1}, sock[2] = {-1, -1};
    rc = NX_ERR_IO;
    if (make_pipe(in) < 0 || make_pipe(outp) < 0 || (cfg->stderr_fd < 0 && make_pipe(errp) < 0) ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock) < 0) {
        sbx_errf(err, err_len, "plan: pipes: %s", strerror(errno));
        goto err_close;
    }
    ssize_t n = 0;
    p.in_r = in[0];
    p.out_w = outp[1];
    p.err_w = cfg->stderr_fd >= 0 ? cfg->stderr_fd : errp[1];
    p.sock = sock[1];
    rc = start_cgroup(cfg, run, err, err_len);
    if (rc < 0)
        goto err_close;

    run->start_us = nx_clock_mono_us();
    if (cfg->limits.timeout_ms && !(cfg->weaken & SBX_WEAKEN_TIMEOUT))
        run->deadline_us = run->start_us + cfg->limits.timeout_ms * 1000;
    long pid = syscall(SYS_clone, p.clone_flags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0)
        child_main(&p);
    if (pid < 0) {
        sbx_errf(err, err_len, "clone: %s", strerror(errno));
        rc = NX_ERR_IO;
        goto err_cgroup;
    }
    run->pid = (pid_t)pid;
    close_fd(&in[0]);
    close_fd(&outp[1]);
    close_fd(&errp[1]);
    close_fd(&sock[1]);
    run->stdin_w = in[1];
    run->stdout_r = outp[0];
    run->stderr_r = errp[0];
    in[1] = outp[0] = errp[0] = -1;
    rc = NX_ERR_IO;
    if (fcntl(run->stdout_r, F_SETFL, O_NONBLOCK) < 0 ||
        (run->stderr_r >= 0 && fcntl(run->stderr_r, F_SETFL, O_NONBLOCK) < 0) ||
        fcntl(run->stdin_w, F_SETFL, O_NONBLOCK) < 0) {
        sbx_errf(err, err_len, "start: nonblocking pipes: %s", strerror(errno));
        goto err_kill;
    }
    run->pidfd = pidfd_open(run->pid, 0);
    if (run->pidfd < 0) {
        sbx_errf(err, err_len, "pidfd_open: %s", strerror(errno));
        goto err_kill;
    }
    if (sbx_cgroup_add_pid(&run->cg, run->pid, err, err_len) < 0)
        goto err_kill;
    if (send(sock[0], "g", 1, MSG_NOSIGNAL) != 1) {
        sbx_errf(err, err_len, "start: signal child: %s", strerror(errno));
        goto err_kill;
    }
    /* The child's steps are bounded work; a setup that hangs is killed. */
    struct pollfd pf = {.fd = sock[0], .events = POLLIN};
    int ready;
    do
        ready = poll(&pf, 1, SBX_SETUP_TIMEOUT_MS);
    while (ready < 0 && errno == EINTR);
    if (ready <= 0) {
        sbx_errf(err, err_len, "start: sandbox setup %s",
                 ready == 0 ? "timed out" : strerror(errno));
        rc = ready == 0 ? NX_ERR_TIMEOUT : NX_ERR_IO;
        goto err_kill;
    }
    struct report rep;
    do
        n = read(sock[0], &rep, sizeof rep);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        sbx_errf(err, err_len, "start: read setup report: %s", strerror(errno));
        goto err_kill;
    }
    if (n > 0) {
        rep.msg[sizeof rep.msg - 1] = '\0';
        sbx_errf(err, err_len, "sandbox setup: %s: %s", rep.msg, strerror(rep.err_no));
        rc = rep.err_no == EACCES || rep.err_no == EPERM ? NX_ERR_PERM : NX_ERR_IO;
        goto err_kill;
    }
    close_fd(&sock[0]);
    *out = run;
    return 0;

err_kill:
    kill(run->pid, SIGKILL);
    waitpid(run->pid, NULL, 0);
    run->pid = -1;
err_cgroup:
    if (sbx_cgroup_destroy(&run->cg) < 0)
        NX_WARN("sbx_cg_cleanup_failed", "where=start");
err_close:
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&outp[0]);
    close_fd(&outp[1]);
    close_fd(&errp[0]);
    close_fd(&errp[1]);
    close_fd(&sock[0]);
    close_fd(&sock[1]);
    sbx_run_free(run);
    return rc < 0 ? rc : NX_ERR_IO;
}

int sbx_run_stdin_fd(const struct sbx_run *run)
{
    return run->stdin_w;
}
int sbx_run_stdout_fd(const struct sbx_run *run)
{
    return run->stdout_r;
}
int sbx_run_pid(const struct sbx_run *run)
{
    return run->pid;
}
int sbx_run_pidfd(const struct sbx_run *run)
{
    return run->pidfd;
}
int sbx_run_poll(struct sbx_run *run)
{
    return sbx_run_pump(run, 0);
}
bool sbx_run_exited(const struct sbx_run *run)
{
    return run->exited;
}
void sbx_run_close_stdin(struct sbx_run *run)
{
    close_fd(&run->stdin_w);
}

void sbx_run_kill(struct sbx_run *run)
{
    if (run->pid <= 0 || run->waited)
        return;
    /* pidfd_send_signal: no risk of hitting a recycled pid. */
    if (run->pidfd >= 0 && syscall(SYS_pidfd_send_signal, run->pidfd, SIGKILL, NULL, 0) < 0)
        NX_DEBUG("sbx_kill", "errno=%d", errno);
    sbx_cgroup_kill(&run->cg);
}

/* Appends to the stdout buffer, killing the run when it passes the output cap. */
static void take_stdout(struct sbx_run *run, const char *buf, size_t n)
{
    run->out_total += n;
    if (run->out_len + n > SBX_OUTPUT_MAX_BYTES) {
        if (!run->truncated) {
            run->truncated = true;
            sbx_run_kill(run);
        }
        return;
    }
    if (run->out_len + n + 1 > run->out_cap) {
        size_t cap = run->out_cap ? run->out_cap : 4096;
        while (cap < run->out_len + n + 1)
            cap *= 2;
        char *nb = realloc(run->out, cap);
        if (!nb) {
            run->truncated = true;
            sbx_run_kill(run);
            return;
        }
        run->out = nb;
        run->out_cap = cap;
    }
    memcpy(run->out + run->out_len, buf, n);
    run->out_len += n;
    run->out[run->out_len] = '\0';
}

static void take_stderr(struct sbx_run *run, const char *buf, size_t n)
{
    if (n >= SBX_STDERR_TAIL_BYTES) {
        buf += n - SBX_STDERR_TAIL_BYTES;
        n = SBX_STDERR_TAIL_BYTES;
    }
    if (run->err_tail_len + n > SBX_STDERR_TAIL_BYTES) {
        size_t drop = run->err_tail_len + n - SBX_STDERR_TAIL_BYTES;
        memmove(run->err_tail, run->err_tail + drop, run->err_tail_len - drop);
        run->err_tail_len -= drop;
    }
    memcpy(run->err_tail + run->err_tail_len, buf, n);
    run->err_tail_len += n;
    run->err_tail[run->err_tail_len] = '\0';
}

static void drain(struct sbx_run *run, int *fd, bool is_stdout)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(*fd, buf, sizeof buf);
        if (n > 0) {
            if (is_stdout)
                take_stdout(run, buf, (size_t)n);
            else
                take_stderr(run, buf, (size_t)n);
            if ((size_t)n < sizeof buf)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        close_fd(fd); /* EOF or error */
        return;
    }
}

int sbx_run_pump(struct sbx_run *run, int wait_ms)
{
    uint64_t now = nx_clock_mono_us();
    if (run->deadline_us && now >= run->deadline_us && !run->exited) {
        if (!run->timed_out) {
            run->timed_out = true;
            sbx_run_kill(run);
        }
        run->deadline_us = 0; /* the kill is enough; wait for the exit */
    }
    int timeout = wait_ms;
    if (run->deadline_us && !run->exited) {
        uint64_t left_ms = (run->deadline_us - now + 999) / 1000;
        if (timeout < 0 || (uint64_t)timeout > left_ms)
            timeout = (int)left_ms;
    }
    struct pollfd pf[3];
    int nf = 0;
    if (run->stdout_r >= 0)
        pf[nf++] = (struct pollfd){.fd = run->stdout_r, .events = POLLIN};
    if (run->stderr_r >= 0)
        pf[nf++] = (struct pollfd){.fd = run->stderr_r, .events = POLLIN};
    if (!run->exited && run->pidfd >= 0)
        pf[nf++] = (struct pollfd){.fd = run->pidfd, .events = POLLIN};
    if (nf == 0)
        return 0;
    int n = poll(pf, (nfds_t)nf, timeout);
    if (n < 0)
        return errno == EINTR ? 0 : NX_ERR_IO;
    for (int i = 0; i < nf; i++) {
        if (!pf[i].revents)
            continue;
        if (pf[i].fd == run->pidfd)
            run->exited = true;
        else if (pf[i].fd == run->stdout_r)
            drain(run, &run->stdout_r, true);
        else
            drain(run, &run->stderr_r, false);
    }
    return 0;
}

int sbx_run_wait(struct sbx_run *run, struct sbx_usage *usage)
{
    memset(usage, 0, sizeof *usage);
    if (run->waited || run->pid <= 0)
        return NX_ERR_STATE;
    /* Until the agent exits and both pipes reach EOF. A process that escaped
     * the PID namespace could hold a pipe open; after the exit, wait at most
     * a short grace period for it. */
    uint64_t exit_seen_us = 0;
    while (run->stdout_r >= 0 || run->stderr_r >= 0 || !run->exited) {
        if (sbx_run_pump(run, run->exited ? 50 : -1) < 0)
            return NX_ERR_IO;
        if (run->exited && !exit_seen_us)
            exit_seen_us = nx_clock_mono_us();
        if (exit_seen_us && nx_clock_mono_us() - exit_seen_us > 500000)
            break;
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    pid_t w;
    do
        w = wait4(run->pid, &status, 0, &ru);
    while (w < 0 && errno == EINTR);
    run->waited = true;
    usage->wall_us = nx_clock_mono_us() - run->start_us;
    if (w == run->pid) {
        if (WIFSIGNALED(status))
            usage->term_signal = WTERMSIG(status);
        else
            usage->exit_code = WEXITSTATUS(status);
    }
    usage->cpu_user_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec;
    usage->cpu_sys_us = (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
    usage->cpu_total_us = usage->cpu_user_us + usage->cpu_sys_us;
    usage->peak_memory_bytes = (uint64_t)ru.ru_maxrss * 1024;
    if (sbx_cgroup_read_usage(&run->cg, usage) < 0)
        NX_WARN("sbx_cg_usage_failed", "pid=%d", (int)run->pid);
    if (sbx_cgroup_destroy(&run->cg) < 0)
        NX_WARN("sbx_cg_destroy_failed", "pid=%d", (int)run->pid);
    usage->timed_out = run->timed_out;
    usage->output_truncated = run->truncated;
    usage->output_bytes = run->out_total;
    return 0;
}

const char *sbx_run_output(const struct sbx_run *run, size_t *len)
{
    *len = run->out_len;
    return run->out ? run->out : "";
}

const char *sbx_run_stderr_tail(const struct sbx_run *run)
{
    return run->err_tail;
}

void sbx_run_free(struct sbx_run *run)
{
    if (!run)
        return;
    if (run->pid > 0 && !run->waited) {
        sbx_run_kill(run);
        if (run->pidfd < 0)
            kill(run->pid, SIGKILL);
        waitpid(run->pid, NULL, 0);
        if (sbx_cgroup_destroy(&run->cg) < 0)
            NX_WARN("sbx_cg_destroy_failed", "pid=%d", (int)run->pid);
    }
    close_fd(&run->pidfd);
    close_fd(&run->stdin_w);
    close_fd(&run->stdout_r);
    close_fd(&run->stderr_r);
    free(run->out);
    free(run);
}
