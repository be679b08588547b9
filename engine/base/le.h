/* le.h - fixed little-endian byte order for the blobs ponder stores (attention summaries,
 * top-k lists), written byte by byte so saved files move between hosts. Header-only. */
#ifndef PD_LE_H
#define PD_LE_H

#include <stdint.h>
#include <string.h>

static inline void pd_le_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t pd_le_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The IEEE-754 bits of f, and back. */
static inline uint32_t pd_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float pd_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
