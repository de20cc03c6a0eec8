/*
 * dockyard-init: a host task in a PID and mount namespace of its own, its exit passed on exactly.
 *
 *   dockyard-init [--join FILE]... [--limit FILE VALUE]... [--release FILE VALUE]... [--user UID GID GROUPS]
 *                 -- PROGRAM ARGS...
 *
 * The executor runs this in place of a host task (executor/containers/hostiso.py; hostinit.py
 * builds it once per agent work dir). It stays in the executor's cgroups; only the namespace's init
 * and the task join the task's (--join: their cgroup.procs files). So whatever the task's
 * CPU quota, its exit is reaped at once: a reaper inside the quota would wait for the next
 * CFS period (100 ms) every time it wakes once the task has used its share.
 *
 *  1. Blocks every signal: one that comes before the task exists is raised in the task.
 *  2. unshare(CLONE_NEWPID | CLONE_NEWNS); every mount becomes private.
 *  3. Forks the namespace's PID 1 (this program again, no exec): it mounts the namespace's
 *     /proc, then joins the task's cgroups (so an init found there has its /proc in place:
 *     framework/local/nested_entry.py enters the namespace through it), then reaps orphans
 *     until it is killed. It dies with this process. Having no signal handler, it gets no
 *     signal but SIGKILL and SIGSTOP from the host: the kernel drops the rest.
 *  4. Forks the task, PID 2 of the namespace, in this process's process group (a signal to
 *     the group reaches it directly): it joins the task's cgroups, writes the --limit files
 *     (the CPU quota: whatever ran before it ran unthrottled), switches to --user (numeric
 *     ids, supplementary groups as a comma list), resets every signal disposition and the
 *     mask, and execs PROGRAM (looked up in $PATH) with ARGS.
 *  5. Waits for the task, writes the --release files (the CPU quota lifted: a process woken
 *     to die in a cgroup over its quota waits for the next period too), kills the
 *     namespace's init (the kernel kills whatever is left in the namespace with it, and
 *     this waits for that), and ends as the task did: its exit status, or death by the
 *     signal that killed it (without a core dump of its own).
 *
 * A failure before the task runs exits 125 (stderr says why); a PROGRAM that cannot be
 * executed exits 127 (not found) or 126, as a shell does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define MAX_FILES 64
#define MAX_GROUPS 1024
#define INIT_NAME "dockyard-init"

struct options {
    const char *join[MAX_FILES];
    int joins;
    const char *limit[MAX_FILES][2];
    int limits;
    const char *release[MAX_FILES][2];
    int releases;
    int switch_user;
    uid_t uid;
    gid_t gid;
    gid_t groups[MAX_GROUPS];
    int ngroups;
    char **argv;
};

static void fail(const char *what) {
    fprintf(stderr, INIT_NAME ": %s: %s\n", what, strerror(errno));
    _exit(SETUP_FAILED);
}

static void usage(const char *why) {
    fprintf(stderr, INIT_NAME ": %s\n", why);
    _exit(SETUP_FAILED);
}

static unsigned long number(const char *text) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || end == text || *end)
        usage("not a number");
    return value;
}

static void parse_groups(struct options *o, char *list) {
    for (char *item = strtok(list, ","); item; item = strtok(NULL, ",")) {
        if (o->ngroups == MAX_GROUPS)
            usage("too many groups");
        o->groups[o->ngroups++] = (gid_t)number(item);
    }
}

static void parse(struct options *o, int argc, char **argv) {
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--join") && i + 1 < argc && o->joins < MAX_FILES) {
            o->join[o->joins++] = argv[++i];
        } else if (!strcmp(argv[i], "--limit") && i + 2 < argc && o->limits < MAX_FILES) {
            o->limit[o->limits][0] = argv[++i];
            o->limit[o->limits++][1] = argv[++i];
        } else if (!strcmp(argv[i], "--release") && i + 2 < argc && o->releases < MAX_FILES) {
            o->release[o->releases][0] = argv[++i];
            o->release[o->releases++][1] = argv[++i];
        } else if (!strcmp(argv[i], "--user") && i + 3 < argc) {
            o->switch_user = 1;
            o->uid = (uid_t)number(argv[++i]);
            o->gid = (gid_t)number(argv[++i]);
            parse_groups(o, argv[++i]);
        } else {
            usage("usage: dockyard-init [--join FILE]... [--limit FILE VALUE]... [--release FILE VALUE]... "
                  "[--user UID GID GROUPS] -- PROGRAM ARGS...");
        }
    }
    if (i + 1 >= argc)
        usage("no task to run after --");
    o->argv = argv + i + 1;
}

static int write_file(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t length = strlen(value);
    ssize_t written = write(fd, value, length);
    int saved = errno;
    close(fd);
    errno = saved;
    return written == (ssize_t)length ? 0 : -1;
}

static void join(const struct options *o) {
    for (int i = 0; i < o->joins; i++)
        if (write_file(o->join[i], "0"))
            fail(o->join[i]);
}

static void close_all(void) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 0U, ~0U, 0) == 0)
        return;
#endif
    for (int fd = 0; fd < 1024; fd++)
        close(fd);
}

/* PID 1 of the namespace: /proc, the cgroups, a word to its parent on `ready`, then reaping. */
static void run_init(const struct options *o, int ready) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL))
        fail("prctl");
    prctl(PR_SET_NAME, INIT_NAME);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
        fail("mount /proc");
    join(o);
    if (write(ready, "1", 1) != 1)
        fail("ready");
    close_all();
    sigset_t child;
    sigemptyset(&child);
    sigaddset(&child, SIGCHLD);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        sigwaitinfo(&child, NULL);
    }
}

/* PID 2: the task, from its cgroups, limits, user and signal state. */
static void run_task(const struct options *o, const sigset_t *early) {
    join(o);
    for (int i = 0; i < o->limits; i++)
        if (write_file(o->limit[i][0], o->limit[i][1]))
            fail(o->limit[i][0]);
    if (o->switch_user) {
        if (setgroups((size_t)o->ngroups, o->groups))
            fail("setgroups");
        if (setresgid(o->gid, o->gid, o->gid))
            fail("setresgid");
        if (setresuid(o->uid, o->uid, o->uid))
            fail("setresuid");
    }
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(early, sig) == 1)
            kill(getpid(), sig);  /* still blocked: pending, delivered as the mask clears */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(o->argv[0], o->argv);
    int saved = errno;
    fprintf(stderr, "%s: %s\n", o->argv[0], strerror(saved));
    _exit(saved == ENOENT ? 127 : 126);
}

/* End as the task ended: the same exit status, or killed by the same signal. */
static void pass_on(int status) {
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    int sig = WTERMSIG(status);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    prctl(PR_SET_DUMPABLE, 0);
    signal(sig, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    kill(getpid(), sig);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    _exit(128 + sig);  /* a signal whose default action is not to terminate */
}

static int reap(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

int main(int argc, char **argv) {
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    static struct options o;
    parse(&o, argc, argv);
    if (unshare(CLONE_NEWPID | CLONE_NEWNS))
        fail("unshare");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
        fail("mount --make-rprivate /");
    int ready[2];
    if (pipe2(ready, O_CLOEXEC))
        fail("pipe");
    pid_t init = fork();
    if (init < 0)
        fail("fork");
    if (init == 0) {
        close(ready[0]);
        run_init(&o, ready[1]);
    }
    close(ready[1]);
    char word;
    if (read(ready[0], &word, 1) != 1) {  /* it said why on stderr */
        kill(init, SIGKILL);
        reap(init);
        _exit(SETUP_FAILED);
    }
    close(ready[0]);
    sigset_t early;
    sigpending(&early);
    pid_t task = fork();
    if (task < 0) {
        int saved = errno;
        kill(init, SIGKILL);
        reap(init);
        errno = saved;
        fail("fork");
    }
    if (task == 0)
        run_task(&o, &early);
    int status = reap(task);
    for (int i = 0; i < o.releases; i++)
        write_file(o.release[i][0], o.release[i][1]);  /* at worst the rest dies a period later */
    kill(init, SIGKILL);
    reap(init);
    if (status == -1)
        fail("wait");
    pass_on(status);
    return SETUP_FAILED;
}
