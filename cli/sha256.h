/* sha256.h - SHA-256 (FIPS 180-4), for the model identity the store records: the digest
 * of a GGUF file's header and tensor table.
 * Pure, no allocation, thread-safe. */
#ifndef PD_SHA256_H
#define PD_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* Writes the lowercase hex digest of data[0..n) (64 characters and a NUL) into hex. */
void pd_sha256_hex(const void *data, size_t n, char hex[65]);

#endif
