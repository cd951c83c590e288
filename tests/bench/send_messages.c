/* send_messages — send files through the C client core (the blocking
 * driver, one session, PIPELINING) and print what the client delivered:
 *
 *     send_messages PORT FILE...
 *
 * Each FILE is one message, sent as its bytes (CRLF lines; the client
 * dot-stuffs).  Prints "delivered D failed F digest HEX", HEX being the sum
 * of digest_hash() (XXH3-64) over the delivered files' bytes mod 2^64: the
 * digest smtp-mock must report (tests/integration/test_digest_xxh3.sh).
 * Exit 0 when every message was delivered, 1 otherwise, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "smtp_blocking.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) b = realloc(b, cap *= 2);
    }
    fclose(f);
    *len = n;
    return b;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    if (argc < 3 || port <= 0 || port > 65535) {
        fprintf(stderr, "usage: send_messages PORT FILE...\n");
        return 2;
    }
    int nmsg = argc - 2;
    char **msg = calloc((size_t)nmsg, sizeof *msg);
    size_t *len = calloc((size_t)nmsg, sizeof *len);
    uint64_t *hash = calloc((size_t)nmsg, sizeof *hash);
    for (int i = 0; i < nmsg; i++) {
        msg[i] = slurp(argv[i + 2], &len[i]);
        if (!msg[i]) {
            fprintf(stderr, "send_messages: cannot read %s\n", argv[i + 2]);
            return 2;
        }
        hash[i] = digest_hash(msg[i], len[i]);
    }
    char err[256];
    int fd = smtp_blocking_connect("127.0.0.1", port, 5.0, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "send_messages: %s\n", err);
        return 1;
    }
    struct smtp_client_config cfg = { .ehlo_name = "client.example", .pipelining = true };
    struct smtp_client *c = smtp_client_new(&cfg);
    static const char *const rcpt[] = { "r@example.org" };
    for (int i = 0; i < nmsg; i++)
        smtp_client_send(c, "s@example.org", rcpt, 1, msg[i], len[i], &hash[i]);
    smtp_client_quit(c);
    long ok = 0, failed = 0;
    uint64_t digest = 0;
    struct smtp_client_event ev;
    for (;;) {
        int st = smtp_blocking_next_event(fd, c, 10.0, &ev);
        if (st == SMTP_BLOCKING_TIMEOUT) { smtp_client_abort(c, "timeout"); continue; }
        if (st == SMTP_BLOCKING_IDLE) break;
        if (ev.type == SMTP_CLIENT_MESSAGE_DONE) {
            if (ev.result == SMTP_CLIENT_OK) {
                ok++;
                digest += *(uint64_t *)ev.user;
            } else {
                failed++;
                fprintf(stderr, "send_messages: failed: %d %s\n", ev.code, ev.text);
            }
        }
        if (ev.type == SMTP_CLIENT_CLOSED) break;
    }
    close(fd);
    smtp_client_free(c);
    char hex[17];
    printf("delivered %ld failed %ld digest %s\n", ok, failed, digest_hex(digest, hex));
    for (int i = 0; i < nmsg; i++) free(msg[i]);
    free(msg);
    free(len);
    free(hash);
    return ok == nmsg ? 0 : 1;
}
