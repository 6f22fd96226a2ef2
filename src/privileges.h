/* privileges — dropping root after binding, and the open-file limit. */
#ifndef WSBROKER_PRIVILEGES_H
#define WSBROKER_PRIVILEGES_H

#include <stddef.h>

/* When running as root (effective uid 0) and user is a non-empty name:
 * switches supplementary groups, group and user ids (real, effective and
 * saved) to that user's, then verifies the switch cannot be undone.
 * Returns 0 when done or when there is nothing to do (not root, or no
 * user); -1 with a message in error otherwise, and the caller must exit:
 * the process may be half switched. A user with uid 0 is refused. */
int privileges_drop(const char *user, char *error, size_t error_size);

/* Raises the RLIMIT_NOFILE soft limit to min(wanted, hard limit); never
 * lowers it. *got (may be NULL) receives the resulting soft limit.
 * Returns 0 when it is >= wanted, 1 when the hard limit is in the way (the
 * caller warns), -1 on error with errno set. */
int privileges_raise_nofile(unsigned long wanted, unsigned long *got);

#endif
