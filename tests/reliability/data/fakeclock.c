/* LD_PRELOAD shim for the clock-jump tests: adds an offset (int64 ns, read through a shared mapping of
   $FAKECLOCK_FILE) to CLOCK_REALTIME only; CLOCK_MONOTONIC, CLOCK_BOOTTIME and the waits built on them are
   untouched. As after a real step, /proc/stat's `btime` (the wall clock minus the boot clock) moves too. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int64_t *offset_ns;
static int (*real_clock_gettime)(clockid_t, struct timespec *);

__attribute__((constructor)) static void init(void) {
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    const char *path = getenv("FAKECLOCK_FILE");
    if (!path) return;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    void *map = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map != MAP_FAILED) offset_ns = map;
}

static void shift(struct timespec *ts) {
    if (!offset_ns) return;
    int64_t ns = (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec + *offset_ns;
    ts->tv_sec = ns / 1000000000LL;
    ts->tv_nsec = ns % 1000000000LL;
    if (ts->tv_nsec < 0) { ts->tv_nsec += 1000000000LL; ts->tv_sec -= 1; }
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
    int r = real_clock_gettime(clk, ts);
    if (r == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE)) shift(ts);
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    int r = clock_gettime(CLOCK_REALTIME, &ts);
    if (r == 0 && tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
    (void)tz;
    return r;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}

/* /proc/stat as the kernel shows it after a step: btime moved by the offset (a memfd with the new text). */
static int shifted_proc_stat(void) {
    static int (*real_open)(const char *, int, ...);
    if (!real_open) real_open = dlsym(RTLD_NEXT, "open");
    int in = real_open("/proc/stat", O_RDONLY);
    if (in < 0) return in;
    static char text[1 << 16];
    ssize_t got, size = 0;
    while (size < (ssize_t)sizeof(text) - 1 && (got = read(in, text + size, sizeof(text) - 1 - size)) > 0) size += got;
    close(in);
    text[size] = 0;
    int out = memfd_create("proc-stat", 0);
    if (out < 0) return out;
    char *line = strstr(text, "\nbtime ");
    if (line && offset_ns) {
        line += 7;
        char *end = strchr(line, '\n');
        long long btime = atoll(line) + *offset_ns / 1000000000LL;
        write(out, text, line - text);
        dprintf(out, "%lld", btime);
        if (end) write(out, end, size - (end - text));
    } else {
        write(out, text, size);
    }
    lseek(out, 0, SEEK_SET);
    return out;
}

static int is_proc_stat(const char *path) { return path && strcmp(path, "/proc/stat") == 0; }

static mode_t mode_of(int flags, va_list ap) { return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0; }

int open(const char *path, int flags, ...) {
    static int (*real)(const char *, int, ...);
    va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    if (is_proc_stat(path)) return shifted_proc_stat();
    if (!real) real = dlsym(RTLD_NEXT, "open");
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    static int (*real)(const char *, int, ...);
    va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    if (is_proc_stat(path)) return shifted_proc_stat();
    if (!real) real = dlsym(RTLD_NEXT, "open64");
    return real(path, flags, mode);
}

int openat(int dir, const char *path, int flags, ...) {
    static int (*real)(int, const char *, int, ...);
    va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    if (is_proc_stat(path)) return shifted_proc_stat();
    if (!real) real = dlsym(RTLD_NEXT, "openat");
    return real(dir, path, flags, mode);
}

int openat64(int dir, const char *path, int flags, ...) {
    static int (*real)(int, const char *, int, ...);
    va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    if (is_proc_stat(path)) return shifted_proc_stat();
    if (!real) real = dlsym(RTLD_NEXT, "openat64");
    return real(dir, path, flags, mode);
}
