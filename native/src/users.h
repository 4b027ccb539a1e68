/*
 * Who a command runs as (the init's exec-as verb, agent.h): docker's
 * `exec -u` forms NAME, UID, NAME:GROUP and UID:GID, resolved against the
 * session's own /etc/passwd and /etc/group by runc's rules (GetExecUser):
 *
 *   NAME      its passwd line: uid, gid, home; groups: its gid and every
 *             group of /etc/group that lists NAME (as initgroups does)
 *   UID       its passwd line if one has that uid (then as NAME), else uid
 *             UID, gid 0, no other group, home /
 *   :GROUP    a group name (its gid) or a gid (its line, else the number);
 *             an explicit group is the only group (docker: no supplementary)
 *
 * Only the command's forked child calls this, never the init: the files are
 * the session's and as hostile as anything in it, so every read is bounded
 * (line length, line count, bytes) and a file that is not a regular one is
 * refused (a FIFO would block). No NSS: the init may be static, and the
 * session's nsswitch.conf must not choose what runs in the child.
 */
#ifndef ENCLAVE_USERS_H
#define ENCLAVE_USERS_H

#include <stddef.h>
#include <sys/types.h>

#define USER_NAME_MAX 32       /* a user or group name (useradd's limit) */
#define USER_LINE_MAX 65536    /* the longest line of /etc/passwd or /etc/group read */
#define USER_LINES_MAX 200000  /* the most lines of either file read */
#define USER_BYTES_MAX (16 * 1024 * 1024) /* the most bytes of either file read */
#define USER_GROUPS_MAX 1024   /* the most groups one user may be in */
#define USER_HOME_MAX 4096     /* the longest home directory taken from passwd */

struct exec_user {
  uid_t uid;
  gid_t gid;
  int ngroups;
  gid_t groups[USER_GROUPS_MAX];
  char name[USER_NAME_MAX + 1]; /* "" when UID has no passwd line */
  char home[USER_HOME_MAX + 1];
};

/* 0 when spec has one of the four forms, its names and numbers within bounds. */
int user_spec_valid(const char *spec);

/*
 * Resolve spec. 0, or -1 with errno (0 when no call failed: no such user,
 * a line too long, ...) and why[] saying what, a complete phrase.
 */
int user_resolve(const char *spec, struct exec_user *u, char *why, size_t cap);

#endif
