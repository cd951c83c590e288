/* retry — see retry.h. */
#include "retry.h"

uint64_t retry_rand64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double retry_backoff(const struct retry_policy *p, int attempt, uint64_t *rng)
{
    double d = p->base_s;
    for (int i = 0; i < attempt && d < p->cap_s; i++)
        d *= 2.0;
    if (d > p->cap_s)
        d = p->cap_s;
    /* 53 random bits -> uniform in [0, 1) */
    double u = (double)(retry_rand64(rng) >> 11) * (1.0 / 9007199254740992.0);
    return d / 2.0 + u * d / 2.0;
}
