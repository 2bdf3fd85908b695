/*
 * tftpload: a TFTP load client for the benchmark (tests/bench/tftp_bench.py).
 *
 * One process, one epoll loop, one non-blocking UDP socket per transfer, so
 * that a storm of hundreds of concurrent read requests costs the client far
 * less CPU than the server it measures (a Python asyncio client used about
 * six times the CPU and hid the differences between servers).
 *
 *   tftpload -p PORT -f FILE [-H 127.0.0.1] [-n CONCURRENT] [-c TOTAL]
 *            [-b BLKSIZE] [-w WINDOWSIZE] [-t TIMEOUT_MS] [-r RETRIES]
 *            [-e EXPECTED_SIZE] [-V]
 *
 * Starts CONCURRENT read requests at once and keeps that many running until
 * TOTAL transfers (default CONCURRENT) have finished. Options blksize and
 * windowsize (RFC 2348, RFC 7440) are asked for when given; a server that
 * does not acknowledge them gets lock-step 512-byte blocks. A transfer that
 * sees no progress for TIMEOUT_MS resends its last packet, and fails after
 * RETRIES resends. -e counts a transfer of another size as failed; -V also
 * checks every byte against the pattern tftp_bench.py writes (byte at offset
 * i is i % 251).
 *
 * Prints one JSON object: completed, failed, failure reasons, bytes,
 * seconds (wall time of the whole run), per-transfer p50/p99/max seconds,
 * retransmits, and the client's own CPU seconds (to show it is not the
 * bottleneck).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_IDLE, ST_RUNNING, ST_DONE, ST_FAILED };
enum { OP_RRQ = 1, OP_DATA = 3, OP_ACK = 4, OP_ERROR = 5, OP_OACK = 6 };

struct xfer {
    int fd;
    int state;
    int have_tid;
    struct sockaddr_in peer; /* the server's transfer port once known */
    uint16_t expected;       /* next block number wanted */
    uint64_t bytes;
    unsigned blksize;
    unsigned window;
    unsigned in_window; /* in-order blocks since the last ACK */
    int reacked;        /* out-of-order seen and answered since the last progress */
    int retries;
    double started, last_progress;
    unsigned char last[600]; /* last packet sent, for resends */
    size_t last_len;
};

static const char *host = "127.0.0.1", *file;
static int port, concurrent = 1, total = 0, want_blksize = 0, want_window = 0;
static int timeout_ms = 2000, max_retries = 5, verify = 0;
static long long expected_size = -1;
static struct sockaddr_in server;
static int ep;
static long completed, failed, fail_timeout, fail_error, fail_size, fail_data;
static long retransmits;
static int newly_finished;
static uint64_t total_bytes;
static double *durations;
static long n_durations;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void send_last(struct xfer *x) {
    const struct sockaddr_in *to = x->have_tid ? &x->peer : &server;
    sendto(x->fd, x->last, x->last_len, 0, (const struct sockaddr *)to, sizeof *to);
}

static void send_ack(struct xfer *x, uint16_t block) {
    x->last[0] = 0;
    x->last[1] = OP_ACK;
    x->last[2] = block >> 8;
    x->last[3] = block & 0xff;
    x->last_len = 4;
    send_last(x);
}

static void finish(struct xfer *x, int state) {
    epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
    close(x->fd);
    x->fd = -1;
    x->state = state;
    newly_finished++;
    if (state == ST_DONE) {
        completed++;
        durations[n_durations++] = now() - x->started;
    } else {
        failed++;
    }
}

static int start(struct xfer *x, int index) {
    memset(x, 0, sizeof *x);
    x->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (x->fd < 0) {
        perror("socket");
        return -1;
    }
    int rcvbuf = 1 << 20;
    setsockopt(x->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)index};
    epoll_ctl(ep, EPOLL_CTL_ADD, x->fd, &ev);
    x->state = ST_RUNNING;
    x->expected = 1;
    x->blksize = 512;
    x->window = 1;
    size_t n = 2;
    x->last[0] = 0;
    x->last[1] = OP_RRQ;
    n += snprintf((char *)x->last + n, sizeof x->last - n, "%s", file) + 1;
    n += snprintf((char *)x->last + n, sizeof x->last - n, "octet") + 1;
    if (want_blksize) {
        n += snprintf((char *)x->last + n, sizeof x->last - n, "blksize") + 1;
        n += snprintf((char *)x->last + n, sizeof x->last - n, "%d", want_blksize) + 1;
    }
    if (want_window > 1) {
        n += snprintf((char *)x->last + n, sizeof x->last - n, "windowsize") + 1;
        n += snprintf((char *)x->last + n, sizeof x->last - n, "%d", want_window) + 1;
    }
    x->last_len = n;
    x->started = x->last_progress = now();
    send_last(x);
    return 0;
}

static void on_oack(struct xfer *x, const unsigned char *p, ssize_t len) {
    const char *s = (const char *)p + 2, *end = (const char *)p + len;
    while (s < end) {
        const char *key = s;
        s += strnlen(s, end - s) + 1;
        if (s >= end)
            break;
        const char *value = s;
        s += strnlen(s, end - s) + 1;
        if (!strcasecmp(key, "blksize"))
            x->blksize = (unsigned)atoi(value);
        else if (!strcasecmp(key, "windowsize"))
            x->window = (unsigned)atoi(value);
    }
    if (x->window < 1)
        x->window = 1;
    x->last_progress = now();
    send_ack(x, 0);
}

static int check_pattern(uint64_t offset, const unsigned char *data, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (data[i] != (unsigned char)((offset + i) % 251))
            return 0;
    return 1;
}

static void on_data(struct xfer *x, const unsigned char *p, ssize_t len) {
    uint16_t block = (uint16_t)(p[2] << 8 | p[3]);
    size_t payload = (size_t)(len - 4);
    if (block != x->expected) {
        /* A resent or out-of-order block: say once what we have (RFC 7440
         * section 4); more ACKs for the rest of a broken window only make the
         * server resend it again. */
        x->in_window = 0;
        if (!x->reacked) {
            x->reacked = 1;
            send_ack(x, (uint16_t)(x->expected - 1));
        }
        return;
    }
    if (verify && !check_pattern(x->bytes, p + 4, payload)) {
        fail_data++;
        finish(x, ST_FAILED);
        return;
    }
    x->bytes += payload;
    total_bytes += payload;
    x->expected++;
    x->in_window++;
    x->retries = 0;
    x->reacked = 0;
    x->last_progress = now();
    if (payload < x->blksize) {
        send_ack(x, block);
        if (expected_size >= 0 && (long long)x->bytes != expected_size) {
            fail_size++;
            finish(x, ST_FAILED);
        } else {
            finish(x, ST_DONE);
        }
        return;
    }
    if (x->in_window >= x->window) {
        x->in_window = 0;
        send_ack(x, block);
    }
}

static void on_readable(struct xfer *x) {
    unsigned char buf[65536 + 4];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fromlen = sizeof from;
        ssize_t len = recvfrom(x->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
        if (len < 0)
            return; /* EAGAIN: drained */
        if (len < 4)
            continue;
        if (!x->have_tid) {
            x->peer = from;
            x->have_tid = 1;
        } else if (from.sin_port != x->peer.sin_port) {
            continue; /* another transfer's port: not ours (RFC 1350 section 4) */
        }
        int op = buf[0] << 8 | buf[1];
        if (op == OP_OACK)
            on_oack(x, buf, len);
        else if (op == OP_DATA)
            on_data(x, buf, len);
        else if (op == OP_ERROR) {
            fail_error++;
            finish(x, ST_FAILED);
        }
        if (x->state != ST_RUNNING)
            return;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(double q) {
    if (!n_durations)
        return 0;
    long i = (long)(q * (n_durations - 1) + 0.5);
    return durations[i];
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "H:p:f:n:c:b:w:t:r:e:V")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'f': file = optarg; break;
        case 'n': concurrent = atoi(optarg); break;
        case 'c': total = atoi(optarg); break;
        case 'b': want_blksize = atoi(optarg); break;
        case 'w': want_window = atoi(optarg); break;
        case 't': timeout_ms = atoi(optarg); break;
        case 'r': max_retries = atoi(optarg); break;
        case 'e': expected_size = atoll(optarg); break;
        case 'V': verify = 1; break;
        default:
            fprintf(stderr, "usage: %s -p PORT -f FILE [-H HOST] [-n N] [-c TOTAL] [-b BLKSIZE] "
                            "[-w WINDOWSIZE] [-t TIMEOUT_MS] [-r RETRIES] [-e SIZE] [-V]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!port || !file || concurrent < 1 || strlen(file) > 400) {
        fprintf(stderr, "tftpload: -p PORT and -f FILE (under 400 characters) are required\n");
        return 2;
    }
    if (total < concurrent)
        total = concurrent;
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) {
        fprintf(stderr, "tftpload: bad IPv4 address %s\n", host);
        return 2;
    }
    ep = epoll_create1(0);
    struct xfer *xs = calloc((size_t)concurrent, sizeof *xs);
    durations = calloc((size_t)total, sizeof *durations);
    struct epoll_event *events = calloc((size_t)concurrent, sizeof *events);
    if (!xs || !durations || !events || ep < 0) {
        perror("tftpload");
        return 1;
    }
    int started = 0, running = 0;
    double t0 = now();
    for (int i = 0; i < concurrent; i++) {
        if (start(&xs[i], i) < 0)
            return 1;
        started++;
        running++;
    }
    double last_scan = t0, timeout_s = timeout_ms / 1000.0;
    while (running > 0) {
        int n = epoll_wait(ep, events, concurrent, 10);
        for (int k = 0; k < n; k++) {
            struct xfer *x = &xs[events[k].data.u32];
            if (x->state == ST_RUNNING)
                on_readable(x);
        }
        double t = now();
        if (t - last_scan >= 0.01) {
            last_scan = t;
            for (int i = 0; i < concurrent; i++) {
                struct xfer *x = &xs[i];
                if (x->state != ST_RUNNING || t - x->last_progress < timeout_s)
                    continue;
                if (x->retries >= max_retries) {
                    fail_timeout++;
                    finish(x, ST_FAILED);
                    continue;
                }
                x->retries++;
                retransmits++;
                x->last_progress = t;
                x->in_window = 0;
                send_last(x);
            }
        }
        /* Finished slots start the next transfer while any are left. */
        for (int i = 0; newly_finished && i < concurrent; i++) {
            struct xfer *x = &xs[i];
            if (x->state == ST_DONE || x->state == ST_FAILED) {
                newly_finished--;
                running--;
                x->state = ST_IDLE;
                if (started < total) {
                    if (start(x, i) < 0)
                        return 1;
                    started++;
                    running++;
                }
            }
        }
    }
    double wall = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    qsort(durations, (size_t)n_durations, sizeof *durations, cmp_double);
    printf("{\"completed\": %ld, \"failed\": %ld, \"fail_timeout\": %ld, \"fail_error\": %ld, "
           "\"fail_size\": %ld, \"fail_data\": %ld, \"bytes\": %llu, \"seconds\": %.6f, "
           "\"p50\": %.6f, \"p99\": %.6f, \"max\": %.6f, \"retransmits\": %ld, \"cpu\": %.6f}\n",
           completed, failed, fail_timeout, fail_error, fail_size, fail_data,
           (unsigned long long)total_bytes, wall, quantile(0.5), quantile(0.99),
           n_durations ? durations[n_durations - 1] : 0.0, retransmits, cpu);
    return failed ? 1 : 0;
}
