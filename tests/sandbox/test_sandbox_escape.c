/*
 * Escape and abuse tests: each runs a small hostile agent in a real sandbox
 * and checks that it is stopped, with a positive control so that a test
 * cannot pass just because the sandbox failed to start. Root only (skipped
 * otherwise). NX_SBX_WEAKEN=<name> switches one protection off to check
 * that its test fails; docs/sandbox.md lists which test guards what.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/sandbox/common.h"

struct fixture {
    char bundle[128];
    char host[128]; /* a host directory the agent must not see */
    struct sbx_config cfg;
    struct ts_result r;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    ts_bundle_new(f->bundle, sizeof f->bundle);
    snprintf(f->host, sizeof f->host, "/tmp/nx-sbx-host-XXXXXX");
    if (!mkdtemp(f->host))
        return -1;
    chmod(f->host, 0755);
    ts_bundle_put(f->host, "marker", "host-secret-7f3a\n", 0644);
    ts_config(&f->cfg, f->bundle);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    ts_rmrf(f->bundle);
    ts_rmrf(f->host);
    free(f);
    return 0;
}

#define NEED_ROOT()                                                                                \
    do {                                                                                           \
        if (!ts_can_sandbox())                                                                     \
            skip();                                                                                \
    } while (0)

static void expect_ran(const struct ts_result *r)
{
    if (r->rc != 0)
        fail_msg("run failed: %s", r->err);
}

static void host_file_outside_bundle_is_invisible(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    char script[1024];
    snprintf(script, sizeof script,
             "cat /agent/manifest.json >/dev/null && echo bundle-ok; cat %s/marker; "
             "cat /root/.bashrc /etc/shadow /etc/hostname; ls /home; true",
             f->host);
    ts_run_sh(&f->cfg, script, &f->r);
    expect_ran(&f->r);
    assert_non_null(strstr(f->r.out, "bundle-ok"));
    assert_null(strstr(f->r.out, "host-secret"));
    assert_int_equal(strlen(f->r.out), strlen("bundle-ok\n"));
}

static void bundle_is_read_only(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    assert_int_equal(chmod(f->bundle, 0777), 0); /* only the mount may stop it */
    ts_bundle_put(f->bundle, "data", "original\n", 0666);
    ts_run_sh(&f->cfg,
              "echo x > /agent/new; echo y > /agent/data; mkdir /agent/d; "
              "echo tmp > /tmp/ok && echo tmp-ok",
              &f->r);
    expect_ran(&f->r);
    assert_non_null(strstr(f->r.out, "tmp-ok"));
    assert_non_null(strstr(f->r.errout, "Read-only file system"));
    char path[SBX_PATH_MAX];
    snprintf(path, sizeof path, "%s/new", f->bundle);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/d", f->bundle);
    assert_int_not_equal(access(path, F_OK), 0);
    char buf[32] = "";
    snprintf(path, sizeof path, "%s/data", f->bundle);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(buf, sizeof buf, fp));
    fclose(fp);
    assert_string_equal(buf, "original\n");
}

static void host_processes_are_invisible(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    /* The shell expands the glob itself: no other process of ours exists. */
    ts_run_sh(&f->cfg, "echo /proc/[0-9]*; echo pid=$$", &f->r);
    expect_ran(&f->r);
    assert_string_equal(f->r.out, "/proc/1\npid=1\n");
}

static void ptrace_is_denied(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    ts_run_py(&f->cfg,
              "import ctypes,os\n"
              "libc=ctypes.CDLL(None,use_errno=True)\n"
              "r=libc.ptrace(0,0,0,0)\n"
              "print('traceme', r, os.strerror(ctypes.get_errno()) if r else 'ok')\n",
              &f->r);
    expect_ran(&f->r);
    assert_string_equal(f->r.out, "traceme -1 Operation not permitted\n");
}

static void mount_and_new_namespaces_are_denied(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    ts_run_py(&f->cfg,
              "import ctypes,os\n"
              "libc=ctypes.CDLL(None,use_errno=True)\n"
              "r=libc.mount(b'none',b'/tmp',b'tmpfs',0,None)\n"
              "print('mount', r, ctypes.get_errno())\n"
              "r=libc.unshare(0x10000000)\n" /* CLONE_NEWUSER */
              "print('unshare', r, ctypes.get_errno())\n",
              &f->r);
    expect_ran(&f->r);
    assert_string_equal(f->r.out, "mount -1 1\nunshare -1 1\n");
}

static void seccomp_denies_the_documented_syscalls(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    /* x86_64 numbers, all arguments 0: without the filter most would fail
     * differently (EFAULT, EINVAL, ENOSYS) or succeed (keyctl). */
    ts_run_py(&f->cfg,
              "import ctypes\n"
              "libc=ctypes.CDLL(None,use_errno=True)\n"
              "nrs={'keyctl':250,'add_key':248,'request_key':249,'bpf':321,"
              "'perf_event_open':298,'userfaultfd':323,'kexec_load':246,'init_module':175,"
              "'finit_module':313,'delete_module':176,'open_by_handle_at':304,"
              "'name_to_handle_at':303,'swapon':167,'swapoff':168,'reboot':169,"
              "'pivot_root':155,'chroot':161,'unshare':272,'setns':308,'umount2':166,"
              "'io_uring_setup':425,'process_vm_readv':310,'clone3':435}\n"
              "for n,nr in sorted(nrs.items()):\n"
              "  r=libc.syscall(nr,0,0,0,0,0,0)\n"
              "  e=ctypes.get_errno()\n"
              "  if r!=-1 or e!=(38 if n=='clone3' else 1): print(n,r,e)\n"
              "print('checked',len(nrs))\n",
              &f->r);
    expect_ran(&f->r);
    assert_string_equal(f->r.out, "checked 23\n");
}

static void setuid_binary_in_bundle_gives_no_privileges(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp /usr/bin/id %s/id && chown 0:0 %s/id && chmod 4755 %s/id",
             f->bundle, f->bundle, f->bundle);
    assert_int_equal(system(cmd), 0);
    ts_run_sh(&f->cfg, "/agent/id", &f->r);
    expect_ran(&f->r);
    assert_non_null(strstr(f->r.out, "uid=65534"));
    assert_null(strstr(f->r.out, "euid=0"));
}

static int listen_local(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 8), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return s;
}

static void network_is_unreachable_unless_granted(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    int port, s = listen_local(&port);
    char script[512];
    snprintf(script, sizeof script,
             "import socket\n"
             "try:\n"
             "  socket.create_connection(('127.0.0.1',%d),timeout=1); print('connected')\n"
             "except OSError as e: print('refused', e.errno)\n",
             port);
    ts_run_py(&f->cfg, script, &f->r);
    expect_ran(&f->r);
    assert_non_null(strstr(f->r.out, "refused"));
    /* Positive control: granting the network lets the same agent connect. */
    f->cfg.allow_network = true;
    ts_run_py(&f->cfg, script, &f->r);
    expect_ran(&f->r);
    assert_string_equal(f->r.out, "connected\n");
    close(s);
}

static void fork_bomb_is_stopped_by_pids_limit(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    f->cfg.limits.pids_max = 16;
    ts_run_py(&f->cfg,
              "import os,time\n"
              "n=0\n"
              "for i in range(200):\n"
              "  try:\n"
              "    if os.fork()==0:\n"
              "      time.sleep(30); os._exit(0)\n"
              "    n+=1\n"
              "  except OSError: pass\n"
              "print('forked', n, flush=True)\n"
              "os._exit(0)\n",
              &f->r);
    expect_ran(&f->r);
    int n = -1;
    assert_int_equal(sscanf(f->r.out, "forked %d", &n), 1);
    assert_true(n > 0 && n < 16);
    /* The real bomb ends with the run (PID namespace), within its timeout. */
    f->cfg.limits.timeout_ms = 1000;
    ts_run_sh(&f->cfg, "b(){ b | b & }; b; sleep 5", &f->r);
    expect_ran(&f->r);
    assert_true(f->r.usage.wall_us < 3000000);
}

static void memory_past_limit_is_oom_killed(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    f->cfg.limits.memory_bytes = 48u << 20;
    ts_run_py(&f->cfg, "print('start', flush=True)\nb = b'x' * (200 << 20)\nprint('survived')\n",
              &f->r);
    expect_ran(&f->r);
    assert_string_equal(f->r.out, "start\n");
    assert_true(f->r.usage.oom_killed);
    assert_int_equal(f->r.usage.term_signal, 9);
    assert_true(f->r.usage.peak_memory_bytes <= (48u << 20));
}

static void cpu_spin_is_throttled_to_quota(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    f->cfg.limits.cpu_millicores = 100; /* 10 % of one core */
    f->cfg.limits.timeout_ms = 1000;
    ts_run_sh(&f->cfg, "while :; do :; done", &f->r);
    expect_ran(&f->r);
    const struct sbx_usage *u = &f->r.usage;
    assert_true(u->timed_out);
    assert_true(u->throttled_us > 0);
    assert_true(u->nr_throttled > 0);
    double share = (double)u->cpu_total_us / (double)u->wall_us;
    if (share < 0.03 || share > 0.25)
        fail_msg("cpu share %.3f of wall, want about 0.10", share);
}

static void filling_tmp_hits_enospc_within_its_size(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    f->cfg.limits.tmp_bytes = 1u << 20;
    ts_run_sh(&f->cfg, "head -c 8000000 /dev/zero > /tmp/fill; echo rc=$?; wc -c < /tmp/fill",
              &f->r);
    expect_ran(&f->r);
    assert_non_null(strstr(f->r.errout, "No space left on device"));
    int rc = -1;
    long size = -1;
    assert_int_equal(sscanf(f->r.out, "rc=%d %ld", &rc, &size), 2);
    assert_int_not_equal(rc, 0);
    assert_true(size <= (1 << 20));
}

static void run_past_timeout_is_killed_and_flagged(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    f->cfg.limits.timeout_ms = 300;
    ts_run_sh(&f->cfg, "sleep 3 & echo started; sleep 3", &f->r);
    expect_ran(&f->r);
    assert_string_equal(f->r.out, "started\n");
    assert_true(f->r.usage.timed_out);
    assert_int_equal(f->r.usage.term_signal, 9);
    assert_true(f->r.usage.wall_us < 1500000);
}

static void overwriting_runtime_through_proc_exe_fails(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    /* A runtime directory bound like /usr, holding a victim executable
     * (CVE-2019-5736: reopen /proc/<pid>/exe for writing once it is no
     * longer busy). */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp /usr/bin/sleep %s/victim", f->host);
    assert_int_equal(system(cmd), 0);
    struct sbx_bind bind = {.host_path = f->host, .sandbox_path = "/opt/rt"};
    f->cfg.extra_binds = &bind;
    f->cfg.extra_binds_len = 1;
    ts_run_sh(&f->cfg,
              "/opt/rt/victim 10 & p=$!; sleep 0.2; exec 3</proc/$p/exe; kill $p; wait $p; "
              "echo started; echo pwned > /proc/self/fd/3 && echo overwritten; "
              "echo pwned >> /opt/rt/victim && echo appended; true",
              &f->r);
    expect_ran(&f->r);
    assert_string_equal(f->r.out, "started\n");
    struct stat a, b;
    snprintf(cmd, sizeof cmd, "%s/victim", f->host);
    assert_int_equal(stat(cmd, &a), 0);
    assert_int_equal(stat("/usr/bin/sleep", &b), 0);
    assert_int_equal(a.st_size, b.st_size);
}

static void inherited_fds_are_closed(void **state)
{
    NEED_ROOT();
    struct fixture *f = *state;
    char path[SBX_PATH_MAX];
    snprintf(path, sizeof path, "%s/marker", f->host);
    int file_fd = open(path, O_RDONLY); /* deliberately without O_CLOEXEC */
    int dir_fd = open(f->host, O_RDONLY | O_DIRECTORY);
    assert_true(file_fd >= 0 && dir_fd >= 0);
    char script[512];
    /* CVE-2024-21626: a leaked directory fd used as a way back into the host. */
    snprintf(script, sizeof script,
             "ls /proc/self/fd | tr '\\n' ' '; echo; cat /proc/self/fd/%d <&%d; "
             "cd /proc/self/fd/%d && cat marker; true",
             file_fd, file_fd, dir_fd);
    ts_run_sh(&f->cfg, script, &f->r);
    close(file_fd);
    close(dir_fd);
    expect_ran(&f->r);
    assert_null(strstr(f->r.out, "host-secret"));
    assert_string_equal(f->r.out, "0 1 2 3 \n"); /* 3 is ls's own directory */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(host_file_outside_bundle_is_invisible, setup, teardown),
        cmocka_unit_test_setup_teardown(bundle_is_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(host_processes_are_invisible, setup, teardown),
        cmocka_unit_test_setup_teardown(ptrace_is_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(mount_and_new_namespaces_are_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(seccomp_denies_the_documented_syscalls, setup, teardown),
        cmocka_unit_test_setup_teardown(setuid_binary_in_bundle_gives_no_privileges, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(network_is_unreachable_unless_granted, setup, teardown),
        cmocka_unit_test_setup_teardown(fork_bomb_is_stopped_by_pids_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_past_limit_is_oom_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(cpu_spin_is_throttled_to_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(filling_tmp_hits_enospc_within_its_size, setup, teardown),
        cmocka_unit_test_setup_teardown(run_past_timeout_is_killed_and_flagged, setup, teardown),
        cmocka_unit_test_setup_teardown(overwriting_runtime_through_proc_exe_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(inherited_fds_are_closed, setup, teardown),
    };
    if (getenv("NX_TEST_FILTER"))
        cmocka_set_test_filter(getenv("NX_TEST_FILTER"));
    alarm(TS_PROGRAM_TIMEOUT_S); /* a hang fails the program instead of blocking the runner */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
