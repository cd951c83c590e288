/* mock_fault — see mock_fault.h. */
#include "mock_fault.h"

#include <math.h>
#include <string.h>

void mock_prng_seed(struct mock_prng *r, uint64_t seed) { r->state = seed; }

uint64_t mock_prng_next(struct mock_prng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double mock_prng_unit(struct mock_prng *r)
{
    return (double)(mock_prng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

enum mock_outcome mock_fault_draw(const struct mock_fault_config *c, struct mock_prng *r)
{
    if (c->drop <= 0 && c->stall <= 0 && c->tempfail <= 0 && c->permfail <= 0)
        return MOCK_ACCEPT;
    double u = mock_prng_unit(r);
    if (u < c->drop)
        return MOCK_DROP;
    if (u < c->drop + c->stall)
        return MOCK_STALL;
    if (u < c->drop + c->stall + c->tempfail)
        return MOCK_TEMPFAIL;
    if (u < c->drop + c->stall + c->tempfail + c->permfail)
        return MOCK_PERMFAIL;
    return MOCK_ACCEPT;
}

int mock_fault_applies(const struct mock_fault_config *c, enum smtp_server_stage st,
                       const struct smtp_server_message *m)
{
    if (st != c->stage)
        return 0;
    return st != SMTP_SERVER_STAGE_RCPT || m->nrcpts == 0;
}

double mock_fault_latency(const struct mock_fault_config *c, struct mock_prng *r)
{
    double d = c->latency;
    switch (c->dist) {
    case MOCK_DIST_FIXED:
        break;
    case MOCK_DIST_UNIFORM:
        d += c->jitter * (2.0 * mock_prng_unit(r) - 1.0);
        break;
    case MOCK_DIST_EXP:
        d = -c->latency * log(1.0 - mock_prng_unit(r));
        break;
    }
    return d > 0 ? d : 0;
}

static const char *const stage_names[] = { "greeting", "mail", "rcpt", "data", "body" };
static const char *const dist_names[] = { "fixed", "uniform", "exp" };

int mock_fault_parse_stage(const char *s, enum smtp_server_stage *out)
{
    for (int i = 0; i <= (int)MOCK_STAGE_BODY; i++)
        if (strcmp(s, stage_names[i]) == 0) {
            *out = (enum smtp_server_stage)i;
            return 0;
        }
    return -1;
}

const char *mock_fault_stage_name(enum smtp_server_stage st) { return stage_names[st]; }

int mock_fault_parse_dist(const char *s, enum mock_dist *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, dist_names[i]) == 0) {
            *out = (enum mock_dist)i;
            return 0;
        }
    return -1;
}

const char *mock_fault_dist_name(enum mock_dist d) { return dist_names[d]; }
