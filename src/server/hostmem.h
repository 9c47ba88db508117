/* hostmem: host memory owned by runtime objects rather than by a session
 * (a graph executor's storage), which clients still reach through arrays
 * those objects hand out: get_input returns the live input buffer and the
 * client copies into it. Copies and kernel arguments accept memory listed
 * here like the session's own allocations. Process-wide, thread-safe; an
 * owner adds a range when it allocates it and removes it before freeing. */
#ifndef TVMRPC_HOSTMEM_H
#define TVMRPC_HOSTMEM_H

#include <stdint.h>

/* 0, or -1 on OOM. */
int hostmem_add(const void *p, uint64_t n);
void hostmem_remove(const void *p);
/* 1 if [p, p + n) lies inside one listed range. */
int hostmem_contains(uint64_t p, uint64_t n);

#endif
