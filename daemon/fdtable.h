/* The kernel's descriptor table, grown once at start. A process's table
 * doubles as descriptors are opened past its size, and in a process with
 * several threads each doubling waits for an RCU grace period while every
 * thread opening a descriptor waits on it: warming many NIC pairs opens a
 * socket per pair on every NIC worker at once, and one doubling stalled
 * them all for 25-40 ms. Grown while the daemon still has one thread, it
 * costs no grace period. */
#ifndef MCEFAD_FDTABLE_H
#define MCEFAD_FDTABLE_H

#include "err.h"

/* Room for FDTABLE_RESERVE descriptors (8 bytes of kernel memory each), or
 * the soft RLIMIT_NOFILE where lower. */
#define FDTABLE_RESERVE 65536

/* Grows the table to want descriptors (at most the soft limit); returns
 * the size reserved or a negative errno with e saying why. Call before any
 * thread starts. */
int fdtable_reserve(unsigned want, err *e);

#endif
