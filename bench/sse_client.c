/*
 * The load generator of bench/sse.py: EventSource-like subscribers and a
 * publisher in one epoll loop, in C so that the client is not what is
 * measured. Built by bench/sse.py with the system's cc.
 *
 *   sse_client idle PORT N            open N streams, print "ready SECONDS"
 *                                     (from the first connect to the last
 *                                     response head), wait for stdin to close
 *   sse_client ready PORT N           open N streams of /ready, 64 connects
 *                                     in flight at a time (non-blocking),
 *                                     each done once its first event has
 *                                     arrived; print "ready SECONDS", wait
 *                                     for stdin to close
 *   sse_client fanout PORT N EVENTS GAP_MS PAD
 *                                     N subscribers; EVENTS POSTs to
 *                                     /publish?seq=I&pad=PAD, each when the
 *                                     last has answered (and GAP_MS after
 *                                     the last began); prints
 *                                     "deliveries seconds p50_ms p99_ms"
 *   sse_client burst PORT N EVENTS PAD
 *                                     N subscribers; one POST to
 *                                     /publish?seq=0&count=EVENTS&pad=PAD,
 *                                     which publishes EVENTS events back to
 *                                     back in one reactor turn; prints as
 *                                     fanout
 *
 * Each event's data carries "t":<unix time of publication>; its latency is
 * the arrival time minus that.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TAIL_MAX 4096
#define READ_SIZE (256 * 1024)

struct conn {
    int fd;
    int head_done;
    size_t tail_len;
    char tail[TAIL_MAX];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double *latencies;
static long delivered, capacity;
static char buffer[READ_SIZE + TAIL_MAX];

static int dial(int port) {
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            perror("write");
            exit(1);
        }
        data += n;
        len -= n;
    }
}

/* Count the complete events in buf[0:len] and time each one. */
static size_t scan(char *buf, size_t len, double arrived) {
    char *end = memmem(buf, len, "\n\n", 2), *last = NULL;
    while (end) {
        last = end + 2;
        end = memmem(last, buf + len - last, "\n\n", 2);
    }
    if (!last) return 0;
    char *p = buf;
    while ((p = memmem(p, last - p, "\"t\":", 4))) {
        p += 4;
        double t = strtod(p, &p);
        if (delivered < capacity) latencies[delivered] = arrived - t;
        delivered++;
    }
    return last - buf;
}

/* Read what is ready on a subscriber; -1 when it closed. */
static int on_readable(struct conn *c) {
    for (;;) {
        memcpy(buffer, c->tail, c->tail_len);
        ssize_t n = read(c->fd, buffer + c->tail_len, READ_SIZE);
        if (n < 0) return (errno == EAGAIN) ? 0 : -1;
        if (n == 0) return -1;
        double arrived = now();
        size_t len = c->tail_len + n, used = 0;
        char *start = buffer;
        if (!c->head_done) {
            char *body = memmem(buffer, len, "\r\n\r\n", 4);
            if (!body) {
                if (len > TAIL_MAX) return -1;
                memcpy(c->tail, buffer, len);
                c->tail_len = len;
                continue;
            }
            if (!memmem(buffer, body - buffer, " 200 ", 5)) {
                fprintf(stderr, "not 200: %.*s\n", (int)(body - buffer), buffer);
                exit(1);
            }
            c->head_done = 1;
            start = body + 4;
            len -= start - buffer;
        }
        used = scan(start, len, arrived);
        size_t rest = len - used;
        if (rest > TAIL_MAX) rest = 0; /* never in practice: events are small */
        memmove(c->tail, start + used, rest);
        c->tail_len = rest;
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Issue 33's client: how a Go program with one epoll thread opens streams. */
struct rconn {
    int fd;
    int state; /* 0 connecting, 1 asked, 2 got the first event */
    size_t got;
    char buf[2048];
};

static int ready_mode(int port, int count) {
    static const char get[] =
        "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
    int ep = epoll_create1(0);
    struct rconn *conns = calloc(count, sizeof *conns);
    int opened = 0, done = 0, inflight = 0;
    double opening = now();
    struct epoll_event events[1024];
    while (done < count) {
        while (inflight < 64 && opened < count) {
            struct rconn *c = &conns[opened++];
            struct sockaddr_in addr = {0};
            addr.sin_family = AF_INET;
            addr.sin_port = htons(port);
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0 || (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0
                              && errno != EINPROGRESS)) {
                perror("connect");
                return 1;
            }
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            inflight++;
        }
        int n = epoll_wait(ep, events, 1024, 30000);
        if (n <= 0) {
            fprintf(stderr, "only %d of %d streams got their first event\n", done, count);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct rconn *c = events[i].data.ptr;
            if (events[i].events & (EPOLLERR | EPOLLHUP)) {
                fprintf(stderr, "a stream failed or closed\n");
                return 1;
            }
            if (c->state == 0) {
                send_all(c->fd, get, sizeof get - 1);
                c->state = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            ssize_t got = read(c->fd, c->buf + c->got, sizeof c->buf - 1 - c->got);
            if (got < 0 && errno == EAGAIN) continue;
            if (got <= 0) {
                fprintf(stderr, "a stream closed before its first event\n");
                return 1;
            }
            c->got += got;
            c->buf[c->got] = 0;
            char *head = strstr(c->buf, "\r\n\r\n");
            if (head && strstr(head + 4, "\n\n")) {
                c->state = 2;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                done++;
                inflight--;
            } else if (c->got == sizeof c->buf - 1) {
                fprintf(stderr, "no first event in 2 KiB\n");
                return 1;
            }
        }
    }
    printf("ready %.6f\n", now() - opening);
    fflush(stdout);
    char byte;
    while (read(0, &byte, 1) > 0) {
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: see the source\n");
        return 2;
    }
    if (strcmp(argv[1], "ready") == 0) return ready_mode(atoi(argv[2]), atoi(argv[3]));
    int burst = strcmp(argv[1], "burst") == 0;
    int fanout = burst || strcmp(argv[1], "fanout") == 0;
    int port = atoi(argv[2]), count = atoi(argv[3]);
    int events = fanout ? atoi(argv[4]) : 0;
    double gap = fanout && !burst ? atof(argv[5]) / 1000.0 : 0;
    const char *pad = burst ? argv[5] : fanout ? argv[6] : "";
    /* One POST publishes every event in a burst. */
    int posts = burst ? 1 : events;
    capacity = (long)count * (events ? events : 1);
    latencies = malloc(sizeof(double) * capacity);

    int ep = epoll_create1(0);
    struct conn *conns = calloc(count, sizeof *conns);
    static const char get[] =
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
    int heads = 0;
    double opening = now();
    for (int i = 0; i < count; i++) {
        conns[i].fd = dial(port);
        send_all(conns[i].fd, get, sizeof get - 1);
        fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    struct epoll_event ready[1024];
    while (heads < count) {
        int n = epoll_wait(ep, ready, 1024, 30000);
        if (n <= 0) {
            fprintf(stderr, "only %d of %d heads\n", heads, count);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = ready[i].data.ptr;
            int had = c->head_done;
            if (on_readable(c) < 0) {
                fprintf(stderr, "a subscriber closed early\n");
                return 1;
            }
            heads += c->head_done && !had;
        }
    }
    if (!fanout) {
        printf("ready %.6f\n", now() - opening);
        fflush(stdout);
        char byte;
        while (read(0, &byte, 1) > 0) {
        }
        return 0;
    }

    /* The publisher: one keep-alive connection, one POST at a time. */
    int pub = dial(port);
    fcntl(pub, F_SETFL, O_NONBLOCK);
    struct epoll_event pev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, pub, &pev);
    char request[4096], reply[4096];
    size_t reply_len = 0;
    int seq = 0, waiting = 0;
    double started = now(), last_post = 0;
    long expected = (long)count * events;
    while (delivered < expected) {
        double t = now();
        if (!waiting && seq < posts && t - last_post >= gap) {
            int len = snprintf(request, sizeof request,
                               "POST /publish?seq=%d&count=%d&pad=%s HTTP/1.1\r\n"
                               "Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
                               seq, burst ? events : 1, pad);
            send_all(pub, request, len);
            last_post = t;
            waiting = 1;
            seq++;
            reply_len = 0;
        }
        int timeout = 1000;
        if (!waiting && seq < posts) {
            double wait = gap - (now() - last_post);
            timeout = wait > 0 ? (int)(wait * 1000) + 1 : 0;
        }
        int n = epoll_wait(ep, ready, 1024, timeout);
        if (n == 0 && now() - started > 120) {
            fprintf(stderr, "only %ld of %ld deliveries\n", delivered, expected);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = ready[i].data.ptr;
            if (c == NULL) {
                ssize_t got = read(pub, reply + reply_len, sizeof reply - reply_len - 1);
                if (got <= 0) {
                    if (got < 0 && errno == EAGAIN) continue;
                    fprintf(stderr, "publisher connection closed\n");
                    return 1;
                }
                reply_len += got;
                reply[reply_len] = 0;
                char *body = strstr(reply, "\r\n\r\n");
                char *cl = strcasestr(reply, "content-length:");
                if (body && cl && reply_len >= (size_t)(body + 4 - reply) + atoi(cl + 15))
                    waiting = 0;
                continue;
            }
            if (on_readable(c) < 0) {
                fprintf(stderr, "a subscriber closed\n");
                return 1;
            }
        }
    }
    double elapsed = now() - started;
    long n = delivered < capacity ? delivered : capacity;
    qsort(latencies, n, sizeof(double), cmp);
    printf("%ld %.6f %.3f %.3f\n", delivered, elapsed, latencies[n / 2] * 1000,
           latencies[(long)(n * 0.99)] * 1000);
    return 0;
}
