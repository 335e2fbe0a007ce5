/* jfield.h - journald field names from arbitrary bytes.
 *
 * journald keeps a field that a client sends only if its name is valid
 * (systemd's journal_field_valid() with allow_protected=false): 1 to 64
 * characters, only A-Z, 0-9 and '_', not starting with a digit or '_' (a
 * leading '_' marks the trusted fields journald adds itself). A field with an
 * invalid name is dropped silently, so every name fetchd sends is made valid
 * here first.
 *
 * The rules of jfield_make() (documented in fetchd.json(5), "journal"):
 *   - the input is prefix followed by name, treated as one string of bytes;
 *   - a-z become A-Z; A-Z, 0-9 and '_' stay;
 *   - every run of other bytes (a '-', a space, the bytes of a UTF-8
 *     character, NUL...) becomes one '_' ("temp-c" -> TEMP_C, "ÄÖ" -> "_");
 *     an '_' of the input is kept as it is, so "_x" and "x" stay apart;
 *   - a result that is empty or starts with a digit or '_' gets an 'X' in
 *     front;
 *   - a result longer than 64 characters keeps its first 55 and gets '_'
 *     and 8 hex digits (A-F upper case) of the 32-bit FNV-1a hash of the
 *     whole input (prefix and name, before sanitising): 64 characters, and
 *     two long names that differ only after the cut still differ.
 * Names that are equal after sanitising are told apart by the caller with
 * jfield_number() ("_2", "_3"...).
 *
 * Pure functions: no allocation, no logging, no global state (fuzzable).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JFIELD_NAME_MAX 64
/* Of a name that is too long: the characters kept before "_<8 hex>". */
#define JFIELD_KEEP (JFIELD_NAME_MAX - 9)

/* True if name[0..len) is a field name journald accepts from a client. */
bool jfield_valid(const char *name, size_t len);

/* Writes the valid field name for prefix (a C string, may be NULL or "")
 * followed by name[0..len) (any bytes) into out, NUL-terminated; returns
 * its length, 1..JFIELD_NAME_MAX. */
size_t jfield_make(const char *prefix, const char *name, size_t len,
                   char out[JFIELD_NAME_MAX + 1]);

/* Makes the n-th variant (n >= 2) of the valid name out[0..len): "_<n>" is
 * appended, cutting the name first as far as needed to stay within
 * JFIELD_NAME_MAX. out is rewritten, NUL-terminated; returns the new length.
 * The result is valid whenever the input was. */
size_t jfield_number(char out[JFIELD_NAME_MAX + 1], size_t len, unsigned n);

/* 32-bit FNV-1a of data[0..len), continuing from h (start: JFIELD_FNV_INIT). */
#define JFIELD_FNV_INIT UINT32_C(2166136261)
uint32_t jfield_fnv1a(uint32_t h, const void *data, size_t len);
