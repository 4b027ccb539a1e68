/* /proc/<pid>/stat, read once for the helpers and the addon alike. */
#ifndef ENCLAVE_PROCSTAT_H
#define ENCLAVE_PROCSTAT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Field 22: start time in clock ticks after boot. With the PID, it names a
 * process for good (a reused PID has another start time). 0 or -1. */
int read_start_time(int pid, unsigned long long *out);

#ifdef __cplusplus
}
#endif

#endif
