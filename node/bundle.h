/*
 * bundle.h - an agent bundle as one deterministic archive (our own format,
 * so no tar is needed and there is exactly one archive per directory tree).
 *
 * Owns: packing a bundle directory into bytes, checking archive bytes that
 * came from anywhere (a client upload, a peer), unpacking them into a new
 * directory, and the content hash that names them (BLAKE2b-256).
 *
 * Never touches: the registry, the network, the sandbox. docs/agents.md has
 * the byte layout; in short:
 *
 *     "NXBUNDL1" | entry count u32 LE | entries, in strictly increasing
 *     byte order of their paths:
 *         kind u8 (1 directory, 2 file) | flags u8 (bit 0: executable; 0 for
 *         a directory) | path length u16 LE | path | (file) size u64 LE | bytes
 *
 * A path is relative, '/'-separated, each component 1..255 bytes of
 * printable ASCII other than '/', never "." or ".."; its parent directory is
 * an earlier entry. Nothing else is recorded (no times, owners or modes
 * beyond the executable bit), so the same tree always packs to the same
 * bytes and so to the same hash. Packing refuses symlinks, devices, fifos
 * and sockets; the archive has no way to express them, so unpacking can
 * never create one or follow one out of the target directory.
 */
#ifndef NX_NODE_BUNDLE_H
#define NX_NODE_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define BUNDLE_MAGIC "NXBUNDL1"
#define BUNDLE_MAGIC_BYTES 8
#define BUNDLE_HEADER_BYTES 12
#define BUNDLE_HASH_BYTES 32
#define BUNDLE_HASH_HEX_LEN 64
#define BUNDLE_MAX_BYTES (64u << 20) /* a whole archive */
#define BUNDLE_MAX_ENTRIES 4096u
#define BUNDLE_PATH_MAX 1024u /* one path, bytes */
#define BUNDLE_DEPTH_MAX 32u  /* directory levels */
#define BUNDLE_MANIFEST "manifest.json"
#define BUNDLE_ERR_MAX 256

enum bundle_kind { BUNDLE_DIR = 1, BUNDLE_FILE = 2 };
#define BUNDLE_FLAG_EXEC 1u

/*
 * Packs the tree under dir into *out (malloc'd, owned by the caller).
 * Refuses (NX_ERR_INVAL, err says which path) symlinks and special files,
 * and (NX_ERR_TOO_BIG) trees beyond the limits above. dir must hold
 * manifest.json.
 */
int bundle_pack(const char *dir, uint8_t **out, size_t *len, char *err, size_t cap) NX_MUST_USE;

/*
 * Checks archive bytes (borrowed) completely: magic, order, paths, parents,
 * sizes, limits, and that a top-level manifest.json file exists. 0, or
 * NX_ERR_DECODE with the first problem in err.
 */
int bundle_check(const uint8_t *buf, size_t len, char *err, size_t cap) NX_MUST_USE;

/* The bytes of the top-level manifest.json inside a checked archive (borrowed from buf). */
int bundle_manifest(const uint8_t *buf, size_t len, const uint8_t **manifest,
                    size_t *manifest_len) NX_MUST_USE;

/*
 * Checks, then unpacks into dest, which must not exist: everything is
 * written under dest.tmp-XXXXXX (files 0644 or 0755, directories 0755),
 * synced, then renamed to dest, so dest is either complete or absent.
 * NX_ERR_EXISTS when dest exists already (another unpack won).
 */
int bundle_unpack(const uint8_t *buf, size_t len, const char *dest, char *err,
                  size_t cap) NX_MUST_USE;

/* BLAKE2b-256 of the archive bytes: the bundle's name everywhere. */
void bundle_hash(const uint8_t *buf, size_t len, uint8_t hash[BUNDLE_HASH_BYTES]);

#endif
