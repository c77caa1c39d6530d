/*
 * agent_store.h - this node's bundles on disk, content-addressed.
 *
 *     DATA_DIR/agents/bundles/<hash hex>.nxb    archives (bundle.h), checked
 *     DATA_DIR/agents/bundles/<hash hex>.part   an upload in progress
 *     DATA_DIR/agents/cache/<hash hex>/         unpacked, what the sandbox mounts
 *
 * Why files and not the RocksDB "blobs" column family: the sandbox needs the
 * bundle as a directory anyway; archives are megabytes, which RocksDB would
 * copy through its WAL, memtables and compactions (and into Raft snapshots'
 * neighbourhood) for no gain; serving a chunk is one pread; and a file named
 * by its hash is written once (temporary name, fsync, rename) and never
 * changes, so there is nothing to make atomic with other state. The database
 * also belongs to the raft host, which does not export it.
 *
 * Every archive is checked (bundle_check) and hashed before it gets its name,
 * whether it came from a client or a peer, so a name always matches its bytes.
 */
#ifndef NX_NODE_AGENT_STORE_H
#define NX_NODE_AGENT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "bundle.h"

#define AGENT_STORE_PATH_MAX 4096

struct agent_store {
    char bundles[AGENT_STORE_PATH_MAX];
    char cache[AGENT_STORE_PATH_MAX];
};

/* Creates the directories when missing. */
int agent_store_open(struct agent_store *s, const char *data_dir, char *err,
                     size_t cap) NX_MUST_USE;

bool agent_store_has(const struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES]);

/*
 * Stores a whole archive (borrowed) under hash after checking its format
 * and that its BLAKE2b-256 is hash: NX_ERR_CORRUPT ("hash mismatch") or
 * NX_ERR_DECODE (not a bundle) otherwise, nothing written. Storing what is
 * already there succeeds.
 */
int agent_store_put(struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES],
                    const uint8_t *buf, size_t len, char *err, size_t cap) NX_MUST_USE;

/*
 * One piece of a client upload: bytes for [offset, offset+len) of an archive
 * of total bytes. Pieces come in order (offset = what the .part file holds,
 * or 0 to restart). When the last piece arrives the whole is checked as by
 * agent_store_put and *complete is set.
 */
int agent_store_upload(struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES],
                       uint64_t offset, uint64_t total, const uint8_t *piece, size_t len,
                       bool *complete, char *err, size_t cap) NX_MUST_USE;

/* Reads up to max bytes at offset of a stored archive; *total its size. NX_ERR_NOT_FOUND. */
int agent_store_read(const struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES],
                     uint64_t offset, uint8_t *buf, size_t max, size_t *got,
                     uint64_t *total) NX_MUST_USE;

/* The unpacked directory of a stored archive, unpacking it first when needed. */
int agent_store_unpacked(struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES], char *dir,
                         size_t dir_cap, char *err, size_t cap) NX_MUST_USE;

#endif
