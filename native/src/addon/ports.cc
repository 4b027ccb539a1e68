// Host ports held for published ports: the daemon's claim on a host address
// and port while a session publishes it.
//   holdPort(ip, port)  a TCP socket bound to ip:port, not listening,
//                       close-on-exec: its fd (closeFd lets go of it)
// Published ports are kernel NAT (src/network/firewall.ts): a connection to
// ip:port is DNAT'd to the session in the output hook, before any socket
// lookup, so this socket never sees one. It only keeps other programs off
// the port: without SO_REUSEADDR it conflicts with any other bind of that
// port on that address or the wildcard, with or without SO_REUSEADDR there.
// Native because Node binds a TCP socket only to listen on it.
#include "shared.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using enclave::ThrowErrno;

Napi::Value HoldPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) return ThrowErrno(env, "holdPort(ip, port)", EINVAL);
  std::string ip = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  if (port < 1 || port > 65535 || inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) return ThrowErrno(env, "holdPort(ip, port)", EINVAL);
  sa.sin_port = htons(static_cast<uint16_t>(port));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, "socket", errno);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, "bind", err);
  }
  return Napi::Number::New(env, fd);
}

const enclave::Export kExports[] = {
    {"holdPort", enclave::Fn<HoldPort>},
};

}  // namespace

void enclave::RegisterPorts(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
