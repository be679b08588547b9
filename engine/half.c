/* half.c - IEEE half and bfloat16 conversions, and the table of every half (half.h). */
#include "half.h"

#include <pthread.h>
#include <string.h>

float pd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            mant &= 0x3FF;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pd_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t abs = x & 0x7FFFFFFF;
    if (abs > 0x7F800000) { /* NaN: keep it quiet */
        return (uint16_t)(sign | 0x7E00 | ((abs >> 13) & 0x3FF));
    }
    if (abs >= 0x477FF000) { /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7C00);
    }
    if (abs < 0x38800000) { /* below the smallest normal half: subnormal or zero */
        if (abs < 0x33000000) { /* < 2^-25 rounds to zero */
            return (uint16_t)sign;
        }
        uint32_t e = abs >> 23;
        uint32_t m = (abs & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) {
            half++;
        }
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
    uint32_t rem = abs & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) {
        h++;
    }
    return (uint16_t)(sign | h);
}

static float f16_table[65536];
static pthread_once_t f16_table_once = PTHREAD_ONCE_INIT;

static void f16_table_init(void)
{
    for (uint32_t i = 0; i < 65536; i++) {
        f16_table[i] = pd_f16_to_f32((uint16_t)i);
    }
}

const float *pd_f16_table(void)
{
    pthread_once(&f16_table_once, f16_table_init);
    return f16_table;
}

float pd_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pd_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFF) > 0x7F800000) {
        return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    }
    return (uint16_t)((x + (0x7FFF + ((x >> 16) & 1))) >> 16);
}
