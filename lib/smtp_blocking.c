/* smtp_blocking — the blocking driver of the SMTP client core (see
 * smtp_blocking.h).  poll() with a deadline around a non-blocking socket:
 * "blocking" to the caller, never stuck on a silent or stalled server. */
#include "smtp_blocking.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Milliseconds left until deadline, rounded up so we never spin at 0. */
static int ms_left(double deadline)
{
    double left = deadline - now_s();
    if (left <= 0) return 0;
    if (left > 3600) return 3600 * 1000;
    return (int)(left * 1000.0) + 1;
}

/* Wait for the in-progress connect of fd; 0 or an errno value. */
static int connect_wait(int fd, double deadline)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int ms = ms_left(deadline);
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return ETIMEDOUT;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) return errno;
        return soerr;
    }
}

int smtp_blocking_connect(const char *host, int port, double timeout_s,
                          char *err, size_t errlen)
{
    double deadline = now_s() + timeout_s;
    if (!host || !*host) host = "127.0.0.1";
    /* inet_pton, not getaddrinfo: even with AI_NUMERICHOST getaddrinfo reads
     * "0127.0.0.1" as octal (87.0.0.1) and accepts "127.1"; the caller
     * resolved any name once (lib/cli.c). */
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "connect to %s:%d: not a numeric IPv4 address and port", host, port);
        errno = EINVAL;
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
            e = errno == EINPROGRESS ? connect_wait(fd, deadline) : errno;
    }
    if (e == 0) return fd;
    if (e == ETIMEDOUT)
        snprintf(err, errlen, "connect to %s:%d: timed out after %gs", host, port,
                 timeout_s);
    else
        snprintf(err, errlen, "connect to %s:%d: %s", host, port, strerror(e));
    if (fd >= 0) close(fd);
    errno = e;
    return -1;
}

/* Write what the socket takes now, every pending segment in one sendmsg
 * (commands, then the body from the message itself); false if the
 * connection is gone. */
static bool flush_output(int fd, struct smtp_client *c)
{
    struct iovec iov[64];
    int k;
    while ((k = smtp_client_output_iov(c, iov, 64)) > 0) {
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)k };
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) { smtp_client_consumed(c, (size_t)w); continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        return false;
    }
    return true;
}

/* Read what is there and feed it; false if the connection is gone. */
static bool pull_input(int fd, struct smtp_client *c)
{
    char buf[16384];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) { smtp_client_feed(c, buf, (size_t)r); return true; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        return false;  /* 0: orderly close; <0: reset or another error */
    }
}

int smtp_blocking_next_event(int fd, struct smtp_client *c, double timeout_s,
                             struct smtp_client_event *ev)
{
    double deadline = now_s() + timeout_s;
    bool last = false;  /* the deadline has passed: this was the final look */
    for (;;) {
        if (smtp_client_next_event(c, ev)) return SMTP_BLOCKING_EVENT;
        bool out = smtp_client_has_output(c), in = smtp_client_wants_input(c);
        if (smtp_client_is_finished(c) || (!out && !in)) return SMTP_BLOCKING_IDLE;
        if (last) return SMTP_BLOCKING_TIMEOUT;
        if (out && !flush_output(fd, c)) { smtp_client_eof(c); continue; }
        out = smtp_client_has_output(c);
        struct pollfd p = { .fd = fd, .events = (short)((in ? POLLIN : 0) |
                                                        (out ? POLLOUT : 0)) };
        int ms = ms_left(deadline);
        last = ms == 0;
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) return SMTP_BLOCKING_TIMEOUT;
        if (r < 0) { smtp_client_eof(c); continue; }  /* EBADF etc.: unusable */
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && in && !pull_input(fd, c))
            smtp_client_eof(c);
        else if ((p.revents & (POLLHUP | POLLERR)) && !in)
            smtp_client_eof(c);
    }
}
