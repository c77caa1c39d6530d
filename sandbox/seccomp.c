/*
 * seccomp.c - the system call filter every agent runs under.
 *
 * Default allow, with a deny list answering EPERM: an agent is ordinary
 * code (interpreters, libcs) and an allow list would break runtimes in ways
 * that are hard to debug, while the syscalls below are the ones container
 * runtimes (Docker's default profile, crun, bubblewrap) single out as kernel
 * attack surface or as ways out of the sandbox. docs/sandbox.md repeats the
 * list and the reason for each group.
 *
 * Also denied: clone() with any namespace flag (a new user namespace would
 * give the agent capabilities over fresh namespaces), clone3 answered with
 * ENOSYS so libcs fall back to clone() whose flags can be inspected, and
 * ioctl(TIOCSTI) (typing into a terminal). Only the native architecture is
 * in the filter: a syscall made through another ABI (int 0x80, x32) kills
 * the process (libseccomp's default bad-arch action).
 *
 * The filter is built once with libseccomp and exported as raw BPF, so the
 * child loads it with a single prctl and allocates nothing after clone().
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sandbox/internal.h"

const char *const sbx_seccomp_denied[] = {
    /* mounts and the root */
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    /* namespaces */
    "unshare", "setns",
    /* other processes' memory */
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    /* kernel code and the machine */
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "iopl", "ioperm", "syslog", "quotactl", "quotactl_fd",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    "uselib", "vhangup",
    /* large attack surface */
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "lookup_dcookie",
    /* file handles bypass the mount tree (the "shocker" escape) */
    "open_by_handle_at", "name_to_handle_at", NULL};

static struct sock_fprog g_prog;
static int g_rc = NX_ERR_INTERNAL;
static char g_err[SBX_ERR_MAX];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int add_rules(scmp_filter_ctx ctx)
{
    for (const char *const *n = sbx_seccomp_denied; *n; n++) {
        int nr = seccomp_syscall_resolve_name(*n);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this kernel/arch */
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) < 0) {
            sbx_errf(g_err, sizeof g_err, "seccomp: rule for %s failed", *n);
            return NX_ERR_INTERNAL;
        }
    }
    static const unsigned long ns_flags[] = {CLONE_NEWUSER,  CLONE_NEWNS,  CLONE_NEWPID,
                                             CLONE_NEWNET,   CLONE_NEWIPC, CLONE_NEWUTS,
                                             CLONE_NEWCGROUP};
    for (size_t i = 0; i < NX_ARRAY_LEN(ns_flags); i++) {
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i])) < 0) {
            sbx_errf(g_err, sizeof g_err, "seccomp: clone rule failed");
            return NX_ERR_INTERNAL;
        }
    }
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0 ||
        seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI)) < 0) {
        sbx_errf(g_err, sizeof g_err, "seccomp: clone3/ioctl rule failed");
        return NX_ERR_INTERNAL;
    }
    return 0;
}

static void build_once(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        sbx_errf(g_err, sizeof g_err, "seccomp: init failed");
        return;
    }
    int fd = -1;
    if (add_rules(ctx) < 0)
        goto out;
    fd = memfd_create("nexus-seccomp", MFD_CLOEXEC);
    if (fd < 0 || seccomp_export_bpf(ctx, fd) < 0) {
        sbx_errf(g_err, sizeof g_err, "seccomp: export: %s", strerror(errno));
        goto out;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0) {
        sbx_errf(g_err, sizeof g_err, "seccomp: export produced %lld bytes", (long long)size);
        goto out;
    }
    struct sock_filter *filter = malloc((size_t)size); /* lives for the process */
    if (!filter || pread(fd, filter, (size_t)size, 0) != size) {
        free(filter);
        sbx_errf(g_err, sizeof g_err, "seccomp: read back failed");
        goto out;
    }
    g_prog.filter = filter;
    g_prog.len = (unsigned short)((size_t)size / sizeof(struct sock_filter));
    g_rc = 0;
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
}

int sbx_seccomp_program(const struct sock_fprog **out, char *err, size_t err_len)
{
    pthread_once(&g_once, build_once);
    if (g_rc < 0) {
        sbx_errf(err, err_len, "%s", g_err);
        return g_rc;
    }
    *out = &g_prog;
    return 0;
}
