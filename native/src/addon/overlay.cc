// Overlay upper directories, read when a session's changes are snapshotted.
//   isOpaqueDir(path)  marked opaque (user.overlay.opaque = y)?
// Native because Node has no getxattr.
#include "shared.h"

#include <cerrno>
#include <string>
#include <sys/xattr.h>

namespace {

using enclave::ThrowErrno;

// isOpaqueDir(path): an overlay upper directory marked opaque (it hides the
// lower layers' entries). Unprivileged overlays keep the mark in user.overlay.
Napi::Value IsOpaqueDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowErrno(env, "isOpaqueDir", EINVAL);
  std::string path = info[0].As<Napi::String>();
  char v[2] = {0, 0};
  ssize_t n = lgetxattr(path.c_str(), "user.overlay.opaque", v, sizeof v);
  if (n < 0 && errno != ENODATA && errno != ENOTSUP && errno != ERANGE) return ThrowErrno(env, "lgetxattr", errno);
  return Napi::Boolean::New(env, n == 1 && v[0] == 'y');
}

const enclave::Export kExports[] = {
    {"isOpaqueDir", enclave::Fn<IsOpaqueDir>},
};

}  // namespace

void enclave::RegisterOverlay(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
