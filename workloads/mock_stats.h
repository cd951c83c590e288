/* mock_stats — smtp-mock's ground truth: what it accepted and injected.
 *
 * Every accepted message is counted; its Message-ID (all its bytes, hashed
 * to 64 bits) goes into a set so that a second copy (a client retrying after a dropped
 * connection) counts as a duplicate and is left out of the digest.  The
 * digest is the sum of the messages' hashes (lib/digest.h) over the first
 * copy of each Message-ID; a message without a Message-ID is always a first
 * copy.  Written as JSON (schema "mailbench.server/1") with mock_stats_write. */
#ifndef MAILBENCH_MOCK_STATS_H
#define MAILBENCH_MOCK_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "smtp_server.h"

struct mock_stats {
    uint64_t connections;          /* sessions accepted (rejected ones not included) */
    uint64_t messages;             /* messages accepted, duplicates included */
    uint64_t unique_messages;      /* distinct Message-IDs (+ messages without one) */
    uint64_t recipients;           /* recipients of accepted messages */
    uint64_t bytes;                /* bytes of accepted messages (unstuffed) */
    uint64_t digest;               /* sum of hashes of first copies, mod 2^64 */
    uint64_t tempfail_injected;    /* 4xx replies injected */
    uint64_t permfail_injected;    /* 5xx replies injected */
    uint64_t drops_injected;       /* connections dropped on purpose */
    uint64_t stalls_injected;      /* sessions that stopped answering on purpose */
    uint64_t protocol_errors;      /* error replies to bad client input */
    uint64_t idle_timeouts;        /* sessions closed with 421 for idleness */
    uint64_t rejected_connections; /* 421 at accept: over --max-conns */
    uint64_t max_concurrent;       /* most sessions open at once */
    struct smtp_server_counts counts; /* commands by verb and reply batches, counted
                                      by every session's core (config.counts) */
    uint64_t *per_conn;            /* per_conn[k]: closed sessions that accepted k
                                      messages (k < per_conn_len), duplicates included */
    size_t per_conn_len;
    uint64_t *ids;                 /* open-addressing set of Message-ID hashes, 0 = empty */
    size_t ids_cap;                /* slots in ids (a power of two) */
    size_t ids_len;                /* slots used */
};

void mock_stats_init(struct mock_stats *st);
void mock_stats_free(struct mock_stats *st);

/* Counts an accepted message; returns 1 for a first copy, 0 for a duplicate. */
int mock_stats_message(struct mock_stats *st, const struct smtp_server_message *m);

/* Counts a closed session that accepted `messages` messages (the JSON's
 * "messages_per_connection": {"k": sessions, ...}, k ascending). */
void mock_stats_conn_closed(struct mock_stats *st, uint64_t messages);

/* Writes the JSON atomically (PATH.tmp, then rename), with "commands"
 * ({"EHLO": n, ..., "other": n}) and "reply_batches"; params_json is the
 * text of the "params" object (its strings written with lib/json.h, as are
 * the ones written here).  Adds uptime and this process's CPU time and
 * peak RSS.  Returns 0, or -1 with errno set. */
int mock_stats_write(const struct mock_stats *st, const char *path, const char *params_json,
                     double uptime_s);

/* One line for humans ("smtp-mock: 12 connections, ..."), no newline. */
void mock_stats_summary(const struct mock_stats *st, char *buf, size_t len);

#endif
