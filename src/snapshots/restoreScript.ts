// The replay of a snapshot, run inside the session it restores into, as its
// root and under its confinement (`sh -c RESTORE_SCRIPT restore zstd|none`,
// the snapshot on stdin): nothing of the file is parsed on the host. It
// unpacks over "/" (the writable layer takes it) all but the volumes' contents
// (volumeFill.ts puts those in volumes), checks the manifest,
// deletes what the snapshot's layer deleted, and drops the metadata. Used by
// `session create --from` (the CLI) and by start (the daemon).
export const RESTORE_SCRIPT = `set -eu
cd /
if [ "$1" = zstd ]; then zstd -dcq; else cat; fi | tar -x -f - -p --numeric-owner --same-owner --anchored --exclude=.enclave/volumes
grep -q '"format":"enclave-snapshot","version":1,' /.enclave/manifest.json || { echo "not an enclave snapshot" >&2; exit 3; }
xargs -0 -r rm -rf -- < /.enclave/deleted
rm -rf /.enclave`;
