/*
 * --init systemd: the plan's boot op, started when the daemon says "boot"
 * (after a start's files are back, so systemd sees the session's /etc as it
 * was left). See boot.c.
 */
#ifndef ENCLAVE_BOOT_H
#define ENCLAVE_BOOT_H

#include "common.h"

#include <stddef.h>
#include <sys/types.h>

/* Fork the boot op's init as PID 1 of a new PID and mount namespace; its pid,
 * or -1 with *step, *err and detail set (the child could not exec it). */
pid_t boot_start(const char *init, const char *machine_id, enum step *step, int *err, char *detail, size_t detail_len);

/* Make our next children be forked in pid's PID namespace; *mnt: its mount
 * namespace (close-on-exec), for them to enter. -1 with errno and detail. */
int boot_enter(pid_t pid, int *mnt, char *detail, size_t detail_len);

#endif
