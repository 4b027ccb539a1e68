// Credentials of a Unix socket's peer, as the kernel recorded them at
// connect time: who is calling the daemon's API.
//   peerCred(fd)    SO_PEERCRED: pid, uid, gid
//   peerGroups(fd)  SO_PEERGROUPS: supplementary groups
// Native because Node's net.Socket offers no getsockopt, and these must come
// from the kernel, not from anything the peer says.
#include "shared.h"

#include <cerrno>
#include <sys/socket.h>
#include <vector>

namespace {

using enclave::ThrowErrno;

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "peerCred(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return ThrowErrno(env, "SO_PEERCRED", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

// peerGroups(fd): the supplementary groups of a connected Unix socket's
// peer, as they were at connect time (SO_PEERGROUPS), so `usermod -aG`
// membership counts and a reused PID cannot lend its groups.
Napi::Value PeerGroups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "peerGroups(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::vector<gid_t> groups(64);
  socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  while (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) < 0) {
    if (errno != ERANGE || len > 65536 * sizeof(gid_t)) return ThrowErrno(env, "SO_PEERGROUPS", errno);
    groups.resize(len / sizeof(gid_t) + 1);
    len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  }
  size_t n = len / sizeof(gid_t);
  Napi::Array out = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, groups[i]));
  return out;
}

const enclave::Export kExports[] = {
    {"peerCred", enclave::Fn<PeerCred>},
    {"peerGroups", enclave::Fn<PeerGroups>},
};

}  // namespace

void enclave::RegisterCredentials(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
