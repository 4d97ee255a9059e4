/* Pieces shared by the CPU kernels: a float32 exp the compiler can vectorise. (Each kernel file
 * is compiled once per vector level, isa.h, so plain loops are vectorised for every level.) */
#ifndef ND_CPU_FAST_MATH_H
#define ND_CPU_FAST_MATH_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* float32 exp in straight-line arithmetic the compiler can vectorise (libm's expf is a call
 * per element): x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its Taylor
 * polynomial to r^7 (error < 1e-8 relative), and 2^n built in the exponent bits. About 1 ulp. */
static inline float fast_expf(float x)
{
    /* Branch-free so loops vectorise: NaN is carried through a select, not a test. */
    bool nan = x != x;
    float xc = nan ? 0.0f : x < -104.0f ? -104.0f : x > 88.72f ? 88.72f : x; /* e^-104 rounds to 0 */
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (xc * 1.44269504088896341f + shifter) - shifter;
    float r = xc - n * 0.693145751953125f;
    r = r - n * 1.42860682030941723e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f + r * (8.33333333e-3f +
                                                                                       r * (1.38888889e-3f + r * 1.98412698e-4f))))));
    /* 2^n for n >= -126 in the exponent field; below that, two steps keep subnormals right. */
    int32_t k = (int32_t)n;
    int32_t k1 = k < -126 ? -126 : k, k2 = k - k1;
    uint32_t b1 = (uint32_t)(k1 + 127) << 23, b2 = (uint32_t)(k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    float result = p * s1 * s2;
    return nan ? x : result;
}

#endif
