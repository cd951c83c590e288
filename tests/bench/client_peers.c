/* client_peers — drive the SMTP client core through the blocking driver
 * against a real server, for interoperability checks by hand:
 *
 *     client_peers PORT [MESSAGES [PIPELINING [RECIPIENTS [SESSIONS]]]]
 *
 * Sends MESSAGES small messages per session (several per session, RSET
 * after failures), over SESSIONS sequential sessions, prints one line per
 * event that is not a plain success, and a summary line with the rate.
 * Exit 0 when every message was delivered, 1 otherwise, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtp_blocking.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One session: returns the number of messages delivered. */
static long session(int port, long nmsg, bool pipelining, const char *const *rcpts,
                    size_t nrcpt, const char *msg, size_t len)
{
    char err[256];
    int fd = smtp_blocking_connect("127.0.0.1", port, 5.0, err, sizeof err);
    if (fd < 0) { fprintf(stderr, "client_peers: %s\n", err); exit(1); }
    struct smtp_client_config cfg = { .ehlo_name = "client.example",
                                      .pipelining = pipelining };
    struct smtp_client *c = smtp_client_new(&cfg);
    for (long i = 0; i < nmsg; i++)
        smtp_client_send(c, "sender@example.org", rcpts, nrcpt, msg, len, NULL);
    smtp_client_quit(c);
    long ok = 0;
    static bool shown;  /* print the server's offer once, not per session */
    struct smtp_client_event ev;
    for (;;) {
        int st = smtp_blocking_next_event(fd, c, 5.0, &ev);
        if (st == SMTP_BLOCKING_TIMEOUT) { smtp_client_abort(c, "timeout"); continue; }
        if (st == SMTP_BLOCKING_IDLE) break;
        if (ev.type == SMTP_CLIENT_READY && !shown && (shown = true))
            printf("READY esmtp=%d pipelining=%d size=%llu\n", ev.esmtp,
                   ev.pipelining, (unsigned long long)ev.size_limit);
        else if (ev.type == SMTP_CLIENT_READY)
            ;
        else if (ev.type == SMTP_CLIENT_MESSAGE_DONE && ev.result == SMTP_CLIENT_OK)
            ok++;
        else if (ev.type != SMTP_CLIENT_CLOSED || ev.result != SMTP_CLIENT_OK)
            printf("%s %s stage=%s %d %s\n", smtp_client_event_name(ev.type),
                   smtp_client_result_name(ev.result),
                   smtp_client_stage_name(ev.stage), ev.code, ev.text);
        if (ev.type == SMTP_CLIENT_CLOSED) break;
    }
    close(fd);
    smtp_client_free(c);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: client_peers PORT [MESSAGES [PIPELINING [RECIPIENTS [SESSIONS]]]]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    long nmsg = argc > 2 ? atol(argv[2]) : 10;
    bool pipe = argc > 3 ? atoi(argv[3]) != 0 : true;
    size_t nrcpt = argc > 4 ? (size_t)atol(argv[4]) : 1;
    long nsess = argc > 5 ? atol(argv[5]) : 1;
    if (port <= 0 || nmsg < 1 || nrcpt < 1 || nrcpt > 8 || nsess < 1) {
        fprintf(stderr, "client_peers: bad arguments\n");
        return 2;
    }
    static const char *const all[] = { "r1@example.org", "r2@example.org",
        "r3@example.org", "r4@example.org", "r5@example.org", "r6@example.org",
        "r7@example.org", "r8@example.org" };
    const char msg[] = "From: sender@example.org\r\nTo: r1@example.org\r\n"
        "Subject: peer test\r\nMessage-ID: <peer@mailbench>\r\n\r\n"
        ".a line starting with a dot\r\n..two\r\n.\r\nend\r\n";
    double t0 = now_s();
    long ok = 0;
    for (long s = 0; s < nsess; s++)
        ok += session(port, nmsg, pipe, all, nrcpt, msg, strlen(msg));
    double dt = now_s() - t0;
    printf("delivered %ld/%ld in %.3f s (%.0f msg/s), pipelining=%d rcpts=%zu\n",
           ok, nmsg * nsess, dt, (double)ok / dt, pipe, nrcpt);
    return ok == nmsg * nsess ? 0 : 1;
}
