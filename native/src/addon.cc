// The in-process half of Enclave's native code: what Node lacks and what
// must not cost a process spawn. Mechanism only; the policy is TypeScript's.
// One file per concern under native/src/addon/, each with its export table;
// this file only registers them. The export list is those tables:
// test/unit/native.test.ts checks the loaded addon against the names that
// src/native/addon.ts declares.
#include "addon/shared.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  enclave::RegisterCredentials(env, exports);  // peer credentials of a Unix socket
  enclave::RegisterPidfd(env, exports);        // watch, signal and reap processes
  enclave::RegisterOom(env, exports);          // OOM kills in a v1 memory cgroup
  enclave::RegisterControl(env, exports);      // a session init's control channel
  enclave::RegisterFds(env, exports);          // pipes and pty masters
  enclave::RegisterLocks(env, exports);        // flock(2) lock files
  enclave::RegisterNotify(env, exports);       // sd_notify
  enclave::RegisterOverlay(env, exports);      // opaque overlay directories
  enclave::RegisterNetlink(env, exports);      // bridge and links (rtnetlink)
  enclave::RegisterNft(env, exports);          // nftables through libnftables
  enclave::RegisterPorts(env, exports);        // host ports held for published ports
  enclave::RegisterSpawn(env, exports);        // posix_spawn of enclave-init
  enclave::RegisterRing(env, exports);         // consoles' output rings in shared memory
  return exports;
}

}  // namespace

NODE_API_MODULE(enclave_addon, Init)
