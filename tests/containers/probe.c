/* What a hostile task would try, one system call per name: prints "ALLOWED name" when the
 * kernel let it through, "REFUSED name errno" when it did not. Built static by
 * tests/containers/test_hostile.py and put into a busybox image as /bin/probe.
 * Each call is made so that, were it allowed, it would change nothing on the host
 * (bad arguments, detached or empty objects). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>

static int report(const char *name, long rc) {
    if (rc >= 0) {
        printf("ALLOWED %s\n", name);
        return 1;
    }
    printf("REFUSED %s %d\n", name, errno);
    return 0;
}

static long probe(const char *name, const char *arg) {
    if (!strcmp(name, "mount")) return mount("none", "/mnt", "tmpfs", 0, NULL);
    if (!strcmp(name, "umount")) return umount2("/proc/sys", MNT_DETACH);
    if (!strcmp(name, "init_module")) return syscall(SYS_init_module, "", 0, "");
    if (!strcmp(name, "finit_module")) {
        int fd = open("/dev/null", O_RDONLY);
        return syscall(SYS_finit_module, fd, "", 0);
    }
    if (!strcmp(name, "delete_module")) return syscall(SYS_delete_module, "dockyard_none", O_NONBLOCK);
    if (!strcmp(name, "unshare_user")) return unshare(CLONE_NEWUSER);
    if (!strcmp(name, "unshare_mount")) return unshare(CLONE_NEWNS);
    if (!strcmp(name, "unshare_net")) return unshare(CLONE_NEWNET);
    if (!strcmp(name, "clone_newuser")) {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return pid;
    }
    if (!strcmp(name, "clone3")) {
        uint64_t args[11] = {0};
        args[4] = SIGCHLD; /* exit_signal */
        long pid = syscall(435, args, sizeof(args));
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return pid;
    }
    if (!strcmp(name, "setns")) {
        int fd = open("/proc/self/ns/mnt", O_RDONLY);
        return setns(fd, 0);
    }
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
    if (!strcmp(name, "add_key")) return syscall(SYS_add_key, "user", "dockyard", "x", 1, -2 /* process */);
    if (!strcmp(name, "request_key")) return syscall(SYS_request_key, "user", "dockyard-none", NULL, 0);
    if (!strcmp(name, "bpf")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        return syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
    }
    if (!strcmp(name, "perf_event_open")) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.type = PERF_TYPE_SOFTWARE;
        attr.size = sizeof(attr);
        attr.config = PERF_COUNT_SW_CPU_CLOCK;
        attr.exclude_kernel = 1;
        return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    }
    if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
    if (!strcmp(name, "io_uring_setup")) {
        char params[120];
        memset(params, 0, sizeof(params));
        return syscall(425, 1, params);
    }
    if (!strcmp(name, "ptrace")) return ptrace(PTRACE_ATTACH, arg ? atoi(arg) : 1, 0, 0);
    if (!strcmp(name, "process_vm_readv")) {
        char here[8], there[8] = {0};
        struct iovec local = {here, sizeof(here)}, remote = {there, sizeof(there)};
        return syscall(SYS_process_vm_readv, arg ? atoi(arg) : 1, &local, 1, &remote, 1, 0);
    }
    if (!strcmp(name, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0);
    if (!strcmp(name, "kexec_file_load")) return syscall(SYS_kexec_file_load, -1, -1, 0, "", 0);
    if (!strcmp(name, "raw_socket")) return socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (!strcmp(name, "packet_socket")) return socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (!strcmp(name, "vsock")) return socket(40, SOCK_STREAM, 0);
    if (!strcmp(name, "open_by_handle_at")) {
        char handle[136];
        memset(handle, 0, sizeof(handle));
        *(unsigned int *)handle = 8;
        return syscall(SYS_open_by_handle_at, AT_FDCWD, handle, O_RDONLY);
    }
    if (!strcmp(name, "personality")) return personality(ADDR_NO_RANDOMIZE);
    if (!strcmp(name, "reboot")) return syscall(SYS_reboot, 0, 0, 0, NULL); /* bad magic */
    if (!strcmp(name, "swapon")) return syscall(SYS_swapon, "/dev/null", 0);
    if (!strcmp(name, "settimeofday")) return syscall(SYS_settimeofday, NULL, NULL);
    if (!strcmp(name, "acct")) return syscall(SYS_acct, NULL);
    if (!strcmp(name, "iopl")) return syscall(SYS_iopl, 0);
    if (!strcmp(name, "syslog")) return syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0);
    if (!strcmp(name, "pivot_root")) return syscall(SYS_pivot_root, "/", "/");
    if (!strcmp(name, "chroot")) return chroot("/");
    if (!strcmp(name, "fork")) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return pid;
    }
    if (!strcmp(name, "tcp_socket")) return socket(AF_INET, SOCK_STREAM, 0);
    fprintf(stderr, "unknown probe %s\n", name);
    exit(2);
}

int main(int argc, char **argv) {
    int allowed = 0;
    for (int i = 1; i < argc; i++) {
        char *name = argv[i], *arg = strchr(name, '=');
        if (arg) *arg++ = 0;
        errno = 0;
        allowed += report(name, probe(name, arg));
    }
    fflush(stdout);
    return allowed ? 1 : 0;
}
