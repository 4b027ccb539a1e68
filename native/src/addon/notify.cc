// Readiness and status for a service manager (sd_notify(3)'s protocol).
//   notify(socketPath, message)  one datagram to NOTIFY_SOCKET
// Native because Node's dgram is UDP only: it has no Unix datagram sockets,
// and no abstract ("@name") addresses.
#include "shared.h"

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

using enclave::ThrowErrno;

// notify(socketPath, message): one datagram to a service manager's
// notification socket (sd_notify(3)'s protocol; "@name" is abstract).
Napi::Value Notify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "notify(socketPath: string, message: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value(), msg = info[1].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) return ThrowErrno(env, "NOTIFY_SOCKET", EINVAL);
  memcpy(addr.sun_path, path.data(), path.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, "NOTIFY_SOCKET", errno);
  ssize_t n = sendto(fd, msg.data(), msg.size(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&addr), len);
  int e = errno;
  close(fd);
  if (n < 0) return ThrowErrno(env, path.c_str(), e);
  return env.Undefined();
}

const enclave::Export kExports[] = {
    {"notify", enclave::Fn<Notify>},
};

}  // namespace

void enclave::RegisterNotify(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
