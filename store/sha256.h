/* sha256.h - SHA-256 (FIPS 180-4): the model identity the store records (the digest of
 * a GGUF file's header and tensor table) and the content hash of imported traces.
 * Pure, no allocation; a struct pd_sha256 has one owner. */
#ifndef PD_SHA256_H
#define PD_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* Writes the lowercase hex digest of data[0..n) (64 characters and a NUL) into hex. */
void pd_sha256_hex(const void *data, size_t n, char hex[65]);

/* The same over data fed in pieces: init, update any number of times, final. */
struct pd_sha256 {
    uint32_t h[8];
    uint64_t n;         /* bytes fed */
    uint8_t buf[64];    /* an unfinished block */
    size_t fill;
};

void pd_sha256_init(struct pd_sha256 *c);
void pd_sha256_update(struct pd_sha256 *c, const void *data, size_t n);
void pd_sha256_final_hex(struct pd_sha256 *c, char hex[65]);

#endif
