/* The random generator: xoshiro256** seeded through splitmix64, one per thread, so results depend
 * only on the seed and the sequence of calls, never on the machine or the thread count. */
#include "core/internal.h"

#include <math.h>

typedef struct rng_state {
    uint64_t s[4];
    bool seeded;
    bool has_spare;
    double spare;
} rng_state;

static ND_THREAD_LOCAL rng_state rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void nd_manual_seed(uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng.s[i] = splitmix64(&x);
    rng.seeded = true;
    rng.has_spare = false;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nd_rng_next(void)
{
    if (!rng.seeded)
        nd_manual_seed(67280421310721ULL); /* PyTorch's default seed, for familiarity */
    uint64_t *s = rng.s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double nd_rng_uniform(void) { return (double)(nd_rng_next() >> 11) * 0x1.0p-53; }
float nd_rng_uniform_f(void) { return (float)(nd_rng_next() >> 40) * 0x1.0p-24f; }

/* Box-Muller: two uniforms give two independent normals; the second is kept for the next call. */
double nd_rng_normal(void)
{
    if (rng.has_spare) {
        rng.has_spare = false;
        return rng.spare;
    }
    double u1 = 1.0 - nd_rng_uniform(); /* (0, 1]: log stays finite */
    double u2 = nd_rng_uniform();
    double r = sqrt(-2.0 * log(u1));
    double theta = 6.283185307179586 * u2;
    rng.spare = r * sin(theta);
    rng.has_spare = true;
    return r * cos(theta);
}
