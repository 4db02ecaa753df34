/*
 * loadgen.c -- closed-loop TCP echo load generator (epoll, single thread).
 *
 * Build:  gcc -O2 -Wall -o loadgen loadgen.c -lm
 * Usage:  loadgen --port N [--host 127.0.0.1] [--conns 50] [--inflight 1]
 *                 [--size 64] [--framing eof|length] [--duration 5]
 *                 [--warmup 1] [--reconnect] [--timeline MS] [--connect-gap US]
 *                 [--reply echo|line]
 *
 * Every connection keeps `inflight` packets outstanding. A packet is `size`
 * bytes on the wire, framing included:
 *   eof:    (size-2) payload bytes + "\r\n"   (payload never contains \r or \n)
 *   length: 4-byte big-endian body length (size-4) + (size-4) body bytes
 * The payload starts with the packet's per-connection sequence number in hex
 * (up to 16 digits), the rest is a fixed letter pattern. An echo server returns
 * the identical bytes, so a reply is complete when `size` bytes came back for
 * it; every reply byte is compared with what was sent (mismatches counted).
 *
 * Latency = time from queueing the packet (immediately followed by the
 * sendmsg that writes it) to the read that completes its echo, CLOCK_MONOTONIC,
 * recorded into a log-linear histogram (<0.4 % relative error). Only replies
 * completed inside the measured window count. Send timestamps live in a
 * per-connection ring indexed by sequence number; the packets themselves live in
 * a per-connection ring of pre-filled slots (see conn_t), so no per-packet copy.
 * Connection errors / unexpected closes are counted (conn_errors) and that
 * connection is dropped; the run continues with the others.
 *
 * --reconnect: a connection the server closes (EOF, reset, EPIPE, HUP) is
 * counted in server_closes instead, reconnected at once, and its outstanding
 * packets (sent but not completely echoed; a partial echo is discarded) are
 * sent again with their original timestamps, so their latency includes the
 * outage. A connect that fails (refused, reset, timeout) is counted in
 * connect_failures and retried after 10 ms. Reply mismatches still count as
 * errors and drop the connection.
 *
 * --connect-gap US: open the connections US microseconds apart instead of all
 * at once (the load starts when all are connected). With several server
 * processes accepting on one listening socket, a burst of connects tends to
 * be accepted by whichever process wakes first; spread out, each is a
 * separate race.
 *
 * --reply line: the server does not echo; it answers each packet with one
 * line of its own (any bytes up to '\n', at most 4096), in order. A reply
 * is complete at its '\n'. A reply line that starts with a decimal digit
 * counts as accepted; any other (e.g. "refused") is still a reply (latency,
 * msgs) but is also counted in replies_other (measured window) and
 * replies_other_total (whole run). Used by the tasks scenario, whose server
 * replies with a task id. Default --reply echo: the behaviour above.
 *
 * --timeline MS: also report per-MS-millisecond bins, from the start of the
 * load phase to the end of the measured window, of completed messages
 * (timeline_msgs), server closes (timeline_closes) and failed connects
 * (timeline_connfail), plus load_start_ns / measure_start_ns on
 * CLOCK_MONOTONIC so a supervisor can line its own events up with them.
 *
 * stderr: "MEASURE_START" when the warmup ends, "MEASURE_END" when the
 * measured window ends (so a supervisor can snapshot server CPU exactly around
 * the window). stdout: one line of JSON with the results.
 *
 * Loopback only: --host must be an IPv4 address in 127.0.0.0/8.
 * Hard cap: the process exits (status 4) after warmup+duration+5 s whatever
 * happens. Exit status 2 if the connections could not be established.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- options */
static char opt_host[64] = "127.0.0.1";
static int opt_port = 0;
static int opt_conns = 50;
static int opt_inflight = 1;
static size_t opt_size = 64;
static int opt_length = 0; /* 0 = eof, 1 = length */
static double opt_duration = 5.0;
static double opt_warmup = 1.0;
static int opt_reconnect = 0;
static int opt_timeline_ms = 0; /* 0 = no timeline */
static int opt_connect_gap_us = 0;
static int opt_reply_line = 0;  /* 0 = echo, 1 = one line per packet */
#define LINE_MAX_REPLY 4096

/* ---------------------------------------------------------------- state */
enum { C_DEAD = 0, C_UP, C_CONNECTING, C_RETRY };

typedef struct conn {
    int fd;
    int alive;           /* connected (C_UP) */
    int state;           /* C_* */
    int64_t retry_at;    /* C_RETRY: when to connect again */
    int64_t lost_at;     /* when the server closed it (for reconnect timing) */
    int want_out;        /* EPOLLOUT currently registered */
    int bad;             /* current reply already counted as mismatch */
    int other;           /* --reply line: current reply does not start with a digit */
    uint64_t next_seq;   /* seq of the next packet to send */
    uint64_t rx_seq;     /* seq of the oldest outstanding packet */
    int outstanding;
    size_t rx_off;       /* bytes of the oldest packet received so far */
    int64_t *ring;       /* send timestamps (ns), indexed seq % inflight */
    /* Packet ring: `inflight` slots of `size` bytes, each pre-filled with the
     * template; packet `seq` lives in slot seq % inflight (only its stamp is
     * rewritten when queued). Packets are queued in seq order, so the unsent
     * bytes [send_seq + send_off, next_seq) are contiguous in the ring except
     * for one wrap: at most 2 iovecs, no per-packet copy. A slot is reused only
     * after its previous packet was fully echoed back, hence long sent. */
    char *pkts;
    uint64_t send_seq;   /* first packet not completely written */
    size_t send_off;     /* bytes of it already written */
} conn_t;

static conn_t *conns;
static int epfd = -1;
static char *tmpl;           /* packet template */
static size_t stamp_off;     /* where the hex seq goes */
static size_t stamp_w;       /* its width (<= 16) */
static int running = 1;      /* keep sending new packets */
static int measuring = 0;
static uint64_t msgs = 0;
static uint64_t conn_errors = 0;
static uint64_t mismatches = 0;
static uint64_t replies_other = 0, replies_other_total = 0;
static int alive_count = 0;   /* connections not C_DEAD (up or reconnecting) */
static uint64_t server_closes = 0, connect_failures = 0, reconnects = 0, resent = 0;
static int retry_pending = 0;
static int64_t reconnect_max_ns = 0, reconnect_sum_ns = 0;
static struct sockaddr_in peer;
/* timeline */
static int64_t load_start_ns = 0;
static int tl_n = 0;
static uint64_t *tl_msgs, *tl_closes, *tl_connfail;

static inline int tl_bin(int64_t now) {
    if (!opt_timeline_ms || load_start_ns == 0 || now < load_start_ns) return -1;
    int64_t b = (now - load_start_ns) / ((int64_t)opt_timeline_ms * 1000000LL);
    return b < tl_n ? (int)b : -1;
}

/* ---------------------------------------------------------------- time */
static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double rusage_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------- histogram
 * Log-linear: values < 2^SUB_BITS ns are exact; above, each power of two is
 * split into 2^SUB_BITS buckets (relative width 1/128). */
#define SUB_BITS 7
#define SUB (1 << SUB_BITS)
#define NBUCKETS (64 * SUB)
static uint64_t hist[NBUCKETS];
static uint64_t hist_n = 0;
static double hist_sum = 0;
static uint64_t hist_max = 0;

static inline int bucket_of(uint64_t v) {
    if (v < SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS;
    int sub = (int)((v >> shift) & (SUB - 1));
    return ((shift + 1) << SUB_BITS) + sub;
}

static double bucket_mid(int b) {
    if (b < SUB) return (double)b;
    int shift = (b >> SUB_BITS) - 1;
    int sub = b & (SUB - 1);
    double lo = (double)((uint64_t)(SUB + sub) << shift);
    return lo + (double)((uint64_t)1 << shift) / 2.0;
}

static inline void hist_add(int64_t v) {
    if (v < 0) v = 0;
    hist[bucket_of((uint64_t)v)]++;
    hist_n++;
    hist_sum += (double)v;
    if ((uint64_t)v > hist_max) hist_max = (uint64_t)v;
}

static double hist_pct_us(double p) {
    if (hist_n == 0) return 0.0;
    uint64_t target = (uint64_t)ceil(p * (double)hist_n);
    if (target < 1) target = 1;
    uint64_t acc = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        acc += hist[b];
        if (acc >= target) return bucket_mid(b) / 1000.0;
    }
    return hist_max / 1000.0;
}

/* ---------------------------------------------------------------- packets */
static const char HEX[] = "0123456789abcdef";

static inline void make_stamp(uint64_t seq, char *dst) {
    for (size_t j = 0; j < stamp_w; j++)
        dst[j] = HEX[(seq >> (4 * (stamp_w - 1 - j))) & 0xf];
}

/* Does p[0..n) equal bytes [off, off+n) of packet `seq`? */
static int verify(uint64_t seq, const char *p, size_t off, size_t n) {
    size_t end = off + n, s0 = stamp_off, s1 = stamp_off + stamp_w;
    size_t a, b;
    a = off; b = end < s0 ? end : s0;
    if (a < b && memcmp(p, tmpl + a, b - a) != 0) return 0;
    a = off > s0 ? off : s0; b = end < s1 ? end : s1;
    if (a < b) {
        char st[16];
        make_stamp(seq, st);
        if (memcmp(p + (a - off), st + (a - s0), b - a) != 0) return 0;
    }
    a = off > s1 ? off : s1; b = end;
    if (a < b && memcmp(p + (a - off), tmpl + a, b - a) != 0) return 0;
    return 1;
}

static void build_template(void) {
    tmpl = malloc(opt_size);
    if (!tmpl) { perror("malloc"); exit(1); }
    size_t hdr = opt_length ? 4 : 0;
    size_t payload = opt_length ? opt_size - 4 : opt_size - 2;
    for (size_t i = 0; i < payload; i++) tmpl[hdr + i] = (char)('A' + (i % 26));
    if (opt_length) {
        uint32_t be = htonl((uint32_t)payload);
        memcpy(tmpl, &be, 4);
    } else {
        tmpl[opt_size - 2] = '\r';
        tmpl[opt_size - 1] = '\n';
    }
    stamp_off = hdr;
    stamp_w = payload < 16 ? payload : 16;
}

/* ---------------------------------------------------------------- conns */
static void conn_close(conn_t *c, int is_error) {
    if (c->state == C_DEAD) return;
    if (is_error) conn_errors++;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == C_RETRY) retry_pending--;
    c->alive = 0;
    c->state = C_DEAD;
    alive_count--;
}

static void flush_out(conn_t *c);

/* Start a non-blocking connect for c (state C_CONNECTING, or C_RETRY on an
 * immediate failure). */
static void conn_start_connect(conn_t *c, int64_t now);

static void connect_failed(conn_t *c, int64_t now) {
    connect_failures++;
    int b = tl_bin(now);
    if (b >= 0) tl_connfail[b]++;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->alive = 0;
    c->state = C_RETRY;
    c->retry_at = now + 10000000LL; /* 10 ms */
    retry_pending++;
}

static void conn_start_connect(conn_t *c, int64_t now) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (c->fd < 0) { perror("socket"); conn_close(c, 1); return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = C_CONNECTING;
    c->alive = 0;
    c->want_out = 1;
    int r = connect(c->fd, (struct sockaddr *)&peer, sizeof peer);
    if (r < 0 && errno != EINPROGRESS) { connect_failed(c, now); return; }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

/* The connect of c (C_CONNECTING) finished: EPOLLOUT/ERR/HUP fired. */
static void conn_connected(conn_t *c, int64_t now) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) { connect_failed(c, now); return; }
    c->state = C_UP;
    c->alive = 1;
    reconnects++;
    int64_t took = now - c->lost_at;
    reconnect_sum_ns += took;
    if (took > reconnect_max_ns) reconnect_max_ns = took;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = 0;
    /* resend every outstanding packet from the oldest one */
    resent += (uint64_t)c->outstanding;
    c->send_seq = c->rx_seq;
    c->send_off = 0;
    c->rx_off = 0;
    c->bad = 0;
    flush_out(c);
}

/* The server closed (or reset) c: with --reconnect, reconnect; else error. */
static void conn_lost(conn_t *c) {
    if (!opt_reconnect || !running) { conn_close(c, 1); return; }
    if (c->state != C_UP) return;
    int64_t now = now_ns();
    server_closes++;
    int b = tl_bin(now);
    if (b >= 0) tl_closes[b]++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->alive = 0;
    c->lost_at = now;
    conn_start_connect(c, now);
}

static void set_events(conn_t *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->want_out = want_out;
}

static inline void queue_packet(conn_t *c, int64_t now) {
    uint64_t slot = c->next_seq % (uint64_t)opt_inflight;
    make_stamp(c->next_seq, c->pkts + slot * opt_size + stamp_off);
    c->ring[slot] = now;
    c->next_seq++;
    c->outstanding++;
}

static inline int has_unsent(const conn_t *c) { return c->send_seq < c->next_seq; }

static void flush_out(conn_t *c) {
    size_t cap = (size_t)opt_inflight * opt_size;
    while (has_unsent(c)) {
        size_t start = (size_t)(c->send_seq % (uint64_t)opt_inflight) * opt_size + c->send_off;
        size_t total = (size_t)(c->next_seq - c->send_seq) * opt_size - c->send_off;
        struct iovec iov[2];
        int niov = 1;
        iov[0].iov_base = c->pkts + start;
        iov[0].iov_len = total < cap - start ? total : cap - start;
        if (iov[0].iov_len < total) {
            iov[1].iov_base = c->pkts;
            iov[1].iov_len = total - iov[0].iov_len;
            niov = 2;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w > 0) {
            size_t off = c->send_off + (size_t)w;
            c->send_seq += off / opt_size;
            c->send_off = off % opt_size;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { set_events(c, 1); return; }
        conn_lost(c); /* EPIPE / ECONNRESET */
        return;
    }
    set_events(c, 0);
}

/* One reply completed (echo or line): latency, counters, send the next packet. */
static inline void reply_done(conn_t *c, int64_t now) {
    if (measuring) {
        hist_add(now - c->ring[c->rx_seq % (uint64_t)opt_inflight]);
        msgs++;
    }
    if (opt_timeline_ms) {
        int b = tl_bin(now);
        if (b >= 0) tl_msgs[b]++;
    }
    c->rx_seq++;
    c->outstanding--;
    c->rx_off = 0;
    c->bad = 0;
    if (running) queue_packet(c, now);
}

/* --reply line: each reply is a line of the server's own. */
static void on_line_bytes(conn_t *c, const char *p, size_t n, int64_t now) {
    while (n > 0) {
        if (c->outstanding == 0) { /* bytes nobody asked for */
            mismatches++;
            conn_close(c, 1);
            return;
        }
        if (c->rx_off == 0) c->other = !(p[0] >= '0' && p[0] <= '9');
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) + 1 : n;
        c->rx_off += take;
        p += take;
        n -= take;
        if (c->rx_off > LINE_MAX_REPLY) { /* no end of line: not a line protocol */
            mismatches++;
            conn_close(c, 1);
            return;
        }
        if (nl) {
            if (c->other) {
                replies_other_total++;
                if (measuring) replies_other++;
            }
            reply_done(c, now);
        }
    }
}

static void on_bytes(conn_t *c, const char *p, size_t n, int64_t now) {
    if (opt_reply_line) { on_line_bytes(c, p, n, now); return; }
    while (n > 0) {
        if (c->outstanding == 0) { /* bytes nobody asked for */
            mismatches++;
            conn_close(c, 1);
            return;
        }
        size_t need = opt_size - c->rx_off;
        size_t take = n < need ? n : need;
        if (!c->bad && !verify(c->rx_seq, p, c->rx_off, take)) {
            c->bad = 1;
            mismatches++;
        }
        c->rx_off += take;
        p += take;
        n -= take;
        if (c->rx_off == opt_size) reply_done(c, now);
    }
}

static char rbuf[256 * 1024];

static void on_readable(conn_t *c) {
    for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r > 0) {
            int64_t now = now_ns();
            on_bytes(c, rbuf, (size_t)r, now);
            if (!c->alive) return;
            if ((size_t)r < sizeof rbuf) break;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_lost(c); /* EOF or error: unexpected close (reconnect with --reconnect) */
        return;
    }
    if (has_unsent(c) && !c->want_out) flush_out(c);
}

/* ---------------------------------------------------------------- misc */
static void hard_cap(int sig) {
    (void)sig;
    static const char msg[] = "loadgen: hard time cap reached, exiting\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(4);
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --port N [--host 127.0.0.1] [--conns 50] [--inflight 1]\n"
            "          [--size 64] [--framing eof|length] [--duration 5] [--warmup 1]\n"
            "          [--reconnect] [--timeline MS] [--connect-gap US] [--reply echo|line]\n",
            argv0);
    exit(1);
}

static int parse_host(const char *h, struct in_addr *out) {
    if (strcmp(h, "localhost") == 0) h = "127.0.0.1";
    if (inet_pton(AF_INET, h, out) != 1) return -1;
    if ((ntohl(out->s_addr) >> 24) != 127) return -1;
    return 0;
}

int main(int argc, char **argv) {
    static struct option lo[] = {
        {"host", required_argument, 0, 'h'},     {"port", required_argument, 0, 'p'},
        {"conns", required_argument, 0, 'c'},    {"inflight", required_argument, 0, 'i'},
        {"size", required_argument, 0, 's'},     {"framing", required_argument, 0, 'f'},
        {"duration", required_argument, 0, 'd'}, {"warmup", required_argument, 0, 'w'},
        {"reconnect", no_argument, 0, 'r'},      {"timeline", required_argument, 0, 't'},
        {"connect-gap", required_argument, 0, 'g'}, {"reply", required_argument, 0, 'R'},
        {"help", no_argument, 0, '?'},           {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'h': snprintf(opt_host, sizeof opt_host, "%s", optarg); break;
        case 'p': opt_port = atoi(optarg); break;
        case 'c': opt_conns = atoi(optarg); break;
        case 'i': opt_inflight = atoi(optarg); break;
        case 's': opt_size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'f':
            if (strcmp(optarg, "eof") == 0) opt_length = 0;
            else if (strcmp(optarg, "length") == 0) opt_length = 1;
            else usage(argv[0]);
            break;
        case 'd': opt_duration = atof(optarg); break;
        case 'w': opt_warmup = atof(optarg); break;
        case 'r': opt_reconnect = 1; break;
        case 't': opt_timeline_ms = atoi(optarg); break;
        case 'g': opt_connect_gap_us = atoi(optarg); break;
        case 'R':
            if (strcmp(optarg, "echo") == 0) opt_reply_line = 0;
            else if (strcmp(optarg, "line") == 0) opt_reply_line = 1;
            else usage(argv[0]);
            break;
        default: usage(argv[0]);
        }
    }
    struct in_addr addr;
    if (parse_host(opt_host, &addr) != 0) {
        fprintf(stderr, "loadgen: refusing host %s: only IPv4 127.0.0.0/8 allowed\n", opt_host);
        return 1;
    }
    if (opt_port <= 0 || opt_port > 65535 || opt_conns < 1 || opt_conns > 10000 ||
        opt_inflight < 1 || opt_inflight > 4096 || opt_duration <= 0 || opt_warmup < 0 ||
        opt_duration > 3600 || opt_warmup > 3600 || opt_size > (16u << 20) ||
        opt_size < (size_t)(opt_length ? 5 : 3) || opt_timeline_ms < 0 ||
        opt_connect_gap_us < 0 || opt_connect_gap_us > 100000 ||
        (opt_timeline_ms > 0 && (opt_warmup + opt_duration) * 1000.0 / opt_timeline_ms > 1e6)) {
        fprintf(stderr, "loadgen: bad arguments (size >= %d, port 1..65535, conns >= 1, "
                        "inflight >= 1, duration > 0)\n", opt_length ? 5 : 3);
        return 1;
    }

    /* hard cap: whatever happens, stop after warmup + duration + 5 s */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, hard_cap);
    double cap = opt_warmup + opt_duration + 5.0;
    struct itimerval it = {{0, 0}, {(time_t)cap, (suseconds_t)((cap - (time_t)cap) * 1e6)}};
    setitimer(ITIMER_REAL, &it, NULL);

    build_template();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) { perror("epoll_create1"); return 1; }
    conns = calloc((size_t)opt_conns, sizeof *conns);
    if (!conns) { perror("calloc"); return 1; }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port),
                             .sin_addr = addr};
    peer = sa;
    if (opt_timeline_ms) {
        tl_n = (int)ceil((opt_warmup + opt_duration) * 1000.0 / opt_timeline_ms) + 1;
        tl_msgs = calloc((size_t)tl_n, sizeof *tl_msgs);
        tl_closes = calloc((size_t)tl_n, sizeof *tl_closes);
        tl_connfail = calloc((size_t)tl_n, sizeof *tl_connfail);
        if (!tl_msgs || !tl_closes || !tl_connfail) { perror("calloc"); return 1; }
    }
    /* ---- connect phase (non-blocking, bounded by 3 s) */
    int pending = 0;
    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (c->fd < 0) { perror("socket"); return 2; }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->ring = calloc((size_t)opt_inflight, sizeof(int64_t));
        c->pkts = malloc((size_t)opt_inflight * opt_size);
        if (!c->ring || !c->pkts) { perror("malloc"); return 1; }
        for (int k = 0; k < opt_inflight; k++) memcpy(c->pkts + (size_t)k * opt_size, tmpl, opt_size);
        int r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
        if (r < 0 && errno != EINPROGRESS) {
            fprintf(stderr, "loadgen: connect %s:%d: %s\n", opt_host, opt_port, strerror(errno));
            return 2;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
        pending++;
        if (opt_connect_gap_us && i + 1 < opt_conns) usleep((useconds_t)opt_connect_gap_us);
    }
    struct epoll_event evs[256];
    int64_t conn_deadline = now_ns() + 3000000000LL;
    while (pending > 0) {
        int64_t left = conn_deadline - now_ns();
        if (left <= 0) {
            fprintf(stderr, "loadgen: timed out connecting to %s:%d\n", opt_host, opt_port);
            return 2;
        }
        int n = epoll_wait(epfd, evs, 256, (int)(left / 1000000) + 1);
        if (n < 0 && errno == EINTR) continue;
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (c->alive) continue;
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err != 0) {
                fprintf(stderr, "loadgen: connect %s:%d: %s\n", opt_host, opt_port, strerror(err));
                return 2;
            }
            c->alive = 1;
            c->state = C_UP;
            alive_count++;
            pending--;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }

    /* ---- load phase */
    int64_t t0 = now_ns();
    load_start_ns = t0;
    int64_t warm_end = t0 + (int64_t)(opt_warmup * 1e9);
    int64_t meas_end = warm_end + (int64_t)(opt_duration * 1e9);
    int64_t meas_start_ns = 0, meas_stop_ns = 0;
    double cpu0 = 0, cpu1 = 0;

    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        int64_t now = now_ns();
        for (int k = 0; k < opt_inflight; k++) queue_packet(c, now);
        flush_out(c);
    }

    for (;;) {
        int64_t now = now_ns();
        if (!measuring && meas_start_ns == 0 && now >= warm_end) {
            cpu0 = rusage_cpu_s();
            meas_start_ns = now_ns();
            measuring = 1;
            fputs("MEASURE_START\n", stderr);
            fflush(stderr);
        }
        if (measuring && now >= meas_end) break;
        if (alive_count == 0) break;
        int64_t next = measuring ? meas_end : warm_end;
        if (retry_pending > 0) {
            for (int i = 0; i < opt_conns; i++) {
                conn_t *c = &conns[i];
                if (c->state != C_RETRY) continue;
                if (c->retry_at <= now) {
                    retry_pending--;
                    c->state = C_CONNECTING;
                    conn_start_connect(c, now);
                } else if (c->retry_at < next) {
                    next = c->retry_at;
                }
            }
        }
        int64_t left = next - now;
        int timeout = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
        int n = epoll_wait(epfd, evs, 256, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            break;
        }
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            uint32_t e = evs[k].events;
            if (c->state == C_CONNECTING) { conn_connected(c, now_ns()); continue; }
            if (!c->alive) continue;
            if (e & EPOLLIN) on_readable(c);
            if (!c->alive) continue;
            if (e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
                /* drain whatever is left, then treat as unexpected close */
                on_readable(c);
                if (c->alive) conn_lost(c);
                continue;
            }
            if (e & EPOLLOUT) flush_out(c);
        }
    }
    if (meas_start_ns == 0) { /* all conns died during warmup */
        meas_start_ns = now_ns();
        cpu0 = rusage_cpu_s();
        fputs("MEASURE_START\n", stderr);
    }
    meas_stop_ns = now_ns();
    cpu1 = rusage_cpu_s();
    measuring = 0;
    running = 0;
    fputs("MEASURE_END\n", stderr);
    fflush(stderr);

    double secs = (double)(meas_stop_ns - meas_start_ns) / 1e9;
    double cpu = cpu1 - cpu0;
    int up_count = 0;
    for (int i = 0; i < opt_conns; i++) up_count += conns[i].state == C_UP;
    printf("{\"framing\": \"%s\", \"size\": %zu, \"conns\": %d, \"inflight\": %d, "
           "\"warmup_s\": %.3f, \"msgs\": %llu, \"seconds\": %.6f, \"msgs_per_s\": %.1f, "
           "\"mean_us\": %.2f, \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, "
           "\"p999_us\": %.2f, \"max_us\": %.2f, \"loadgen_cpu_s\": %.4f, "
           "\"loadgen_cpu_pct\": %.1f, \"errors\": %llu, \"conn_errors\": %llu, "
           "\"mismatches\": %llu, \"conns_alive\": %d, \"reconnect\": %s, "
           "\"server_closes\": %llu, \"connect_failures\": %llu, \"reconnects\": %llu, "
           "\"resent_packets\": %llu, \"reconnect_mean_us\": %.1f, \"reconnect_max_us\": %.1f, "
           "\"load_start_ns\": %lld, \"measure_start_ns\": %lld, \"measure_end_ns\": %lld, "
           "\"connect_gap_us\": %d, \"reply\": \"%s\", \"replies_other\": %llu, "
           "\"replies_other_total\": %llu",
           opt_length ? "length" : "eof", opt_size, opt_conns, opt_inflight, opt_warmup,
           (unsigned long long)msgs, secs, secs > 0 ? (double)msgs / secs : 0.0,
           hist_n ? hist_sum / (double)hist_n / 1000.0 : 0.0, hist_pct_us(0.50),
           hist_pct_us(0.90), hist_pct_us(0.99), hist_pct_us(0.999), hist_max / 1000.0, cpu,
           secs > 0 ? 100.0 * cpu / secs : 0.0,
           (unsigned long long)(conn_errors + mismatches), (unsigned long long)conn_errors,
           (unsigned long long)mismatches, up_count, opt_reconnect ? "true" : "false",
           (unsigned long long)server_closes, (unsigned long long)connect_failures,
           (unsigned long long)reconnects, (unsigned long long)resent,
           reconnects ? (double)reconnect_sum_ns / (double)reconnects / 1000.0 : 0.0,
           reconnect_max_ns / 1000.0, (long long)load_start_ns, (long long)meas_start_ns,
           (long long)meas_stop_ns, opt_connect_gap_us, opt_reply_line ? "line" : "echo",
           (unsigned long long)replies_other, (unsigned long long)replies_other_total);
    if (opt_timeline_ms) {
        int last = tl_bin(meas_stop_ns);
        int n = last < 0 ? tl_n : last + 1;
        uint64_t *arrs[3] = {tl_msgs, tl_closes, tl_connfail};
        const char *names[3] = {"timeline_msgs", "timeline_closes", "timeline_connfail"};
        printf(", \"timeline_ms\": %d", opt_timeline_ms);
        for (int a = 0; a < 3; a++) {
            printf(", \"%s\": [", names[a]);
            for (int i = 0; i < n; i++) printf(i ? ",%llu" : "%llu", (unsigned long long)arrs[a][i]);
            printf("]");
        }
    }
    printf("}\n");
    fflush(stdout);
    for (int i = 0; i < opt_conns; i++)
        if (conns[i].fd >= 0 && conns[i].state != C_DEAD) close(conns[i].fd);
    return 0;
}
