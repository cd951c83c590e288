/* mock_stats — see mock_stats.h. */
#include "mock_stats.h"

#include "digest.h"
#include "json.h"
#include "stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

void mock_stats_init(struct mock_stats *st) { memset(st, 0, sizeof *st); }

void mock_stats_free(struct mock_stats *st)
{
    free(st->ids);
    st->ids = NULL;
    free(st->per_conn);
    st->per_conn = NULL;
    st->per_conn_len = 0;
}

void mock_stats_conn_closed(struct mock_stats *st, uint64_t messages)
{
    if (messages >= st->per_conn_len) {
        size_t n = st->per_conn_len ? st->per_conn_len : 16;
        while (n <= messages)
            n *= 2;
        uint64_t *p = realloc(st->per_conn, n * sizeof *p);
        if (p == NULL)
            abort();           /* as the id set: cannot happen at our sizes */
        memset(p + st->per_conn_len, 0, (n - st->per_conn_len) * sizeof *p);
        st->per_conn = p;
        st->per_conn_len = n;
    }
    st->per_conn[messages]++;
}

/* Inserts h (non-zero); returns 1 if it was new.  The table is kept at most
 * half full, so probes stay short. */
static int idset_insert(struct mock_stats *st, uint64_t h)
{
    if ((st->ids_len + 1) * 2 > st->ids_cap) {
        size_t ncap = st->ids_cap ? st->ids_cap * 2 : 1024;
        uint64_t *n = calloc(ncap, sizeof *n);
        if (n == NULL)
            abort();           /* 8 bytes per message: cannot happen at our sizes */
        for (size_t i = 0; i < st->ids_cap; i++) {
            uint64_t v = st->ids[i];
            if (v == 0)
                continue;
            size_t j = v & (ncap - 1);
            while (n[j] != 0)
                j = (j + 1) & (ncap - 1);
            n[j] = v;
        }
        free(st->ids);
        st->ids = n;
        st->ids_cap = ncap;
    }
    size_t j = h & (st->ids_cap - 1);
    while (st->ids[j] != 0) {
        if (st->ids[j] == h)
            return 0;
        j = (j + 1) & (st->ids_cap - 1);
    }
    st->ids[j] = h;
    st->ids_len++;
    return 1;
}

int mock_stats_message(struct mock_stats *st, const struct smtp_server_message *m)
{
    st->messages++;
    st->recipients += m->nrcpts;
    st->bytes += m->size;
    int first = 1;
    if (m->message_id != NULL) {
        /* Every byte: ids that differ after a NUL are not duplicates. */
        uint64_t h = digest_hash(m->message_id, m->message_id_len);
        first = idset_insert(st, h ? h : 1);
    }
    if (first) {
        st->unique_messages++;
        st->digest += m->hash;
    }
    return first;
}

int mock_stats_write(const struct mock_stats *st, const char *path, const char *params_json,
                     double uptime_s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char *tmp, hex[17];
    if (asprintf(&tmp, "%s.tmp", path) < 0)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        int err = errno;
        free(tmp);
        errno = err;
        return -1;
    }
#define U(x) (unsigned long long)(x)
    fputs("{\n  \"schema\": ", f);
    json_write_string(f, "mailbench.server/1");
    fprintf(f, ",\n"
            "  \"connections\": %llu,\n  \"messages\": %llu,\n  \"unique_messages\": %llu,\n"
            "  \"duplicates\": %llu,\n  \"recipients\": %llu,\n  \"bytes\": %llu,\n"
            "  \"digest\": ",
            U(st->connections), U(st->messages), U(st->unique_messages),
            U(st->messages - st->unique_messages), U(st->recipients), U(st->bytes));
    json_write_string(f, digest_hex(st->digest, hex));
    fprintf(f, ",\n  \"tempfail_injected\": %llu,\n"
            "  \"permfail_injected\": %llu,\n  \"drops_injected\": %llu,\n"
            "  \"stalls_injected\": %llu,\n"
            "  \"protocol_errors\": %llu,\n  \"idle_timeouts\": %llu,\n"
            "  \"rejected_connections\": %llu,\n  \"max_concurrent\": %llu,\n",
            U(st->tempfail_injected),
            U(st->permfail_injected), U(st->drops_injected), U(st->stalls_injected),
            U(st->protocol_errors),
            U(st->idle_timeouts), U(st->rejected_connections), U(st->max_concurrent));
    fputs("  \"commands\": {", f);
    for (int i = 0; i < SMTP_SERVER_CMD_COUNT; i++) {
        fputs(i ? ", " : "", f);
        json_write_string(f, smtp_server_cmd_name((enum smtp_server_cmd)i));
        fprintf(f, ": %llu", U(st->counts.commands[i]));
    }
    fprintf(f, "},\n  \"reply_batches\": %llu,\n", U(st->counts.reply_batches));
    fputs("  \"messages_per_connection\": {", f);
    for (size_t k = 0, n = 0; k < st->per_conn_len; k++)
        if (st->per_conn[k])
            fprintf(f, "%s\"%zu\": %llu", n++ ? ", " : "", k, U(st->per_conn[k]));
    fputs("},\n", f);
#undef U
    fprintf(f, "  \"uptime_s\": %.6f,\n  \"cpu_user_s\": %.6f,\n  \"cpu_sys_s\": %.6f,\n"
            "  \"max_rss_kb\": %ld,\n  \"params\": %s\n}\n", uptime_s,
            ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, stats_peak_rss_kb(), params_json);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        free(tmp);
        errno = err;
        return -1;
    }
    free(tmp);
    return 0;
}

void mock_stats_summary(const struct mock_stats *st, char *buf, size_t len)
{
    char hex[17];
    snprintf(buf, len, "smtp-mock: %llu connections, %llu messages (%llu duplicates), "
             "%llu recipients, %llu bytes, digest %s, injected %llu tempfail %llu permfail "
             "%llu drops %llu stalls, %llu protocol errors, %llu idle timeouts, %llu rejected",
             (unsigned long long)st->connections, (unsigned long long)st->messages,
             (unsigned long long)(st->messages - st->unique_messages),
             (unsigned long long)st->recipients, (unsigned long long)st->bytes,
             digest_hex(st->digest, hex), (unsigned long long)st->tempfail_injected,
             (unsigned long long)st->permfail_injected, (unsigned long long)st->drops_injected,
             (unsigned long long)st->stalls_injected, (unsigned long long)st->protocol_errors, (unsigned long long)st->idle_timeouts,
             (unsigned long long)st->rejected_connections);
}
