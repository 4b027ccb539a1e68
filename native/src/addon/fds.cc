// Raw fds the daemon hands to sessions and takes from them: the pipes of a
// piped exec, the pty master of a terminal.
//   pipe()                     [readEnd, writeEnd], both close-on-exec
//   closeFd(fd)                close an fd above 2
//   isPtyMaster(fd)            is a received fd a pty master?
//   setWinsize(fd, cols, rows) terminal size of a pty master
// Native because Node has no pipe(2) that returns fds to pass on, and no
// ioctl(2) (TIOCGPTN, TIOCSWINSZ).
#include "shared.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

namespace {

using enclave::ThrowErrno;

// pipe(): [readEnd, writeEnd], both close-on-exec.
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return ThrowErrno(env, "pipe2", errno);
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, p[0]));
  a.Set(1u, Napi::Number::New(env, p[1]));
  return a;
}

int FdArg(const Napi::CallbackInfo& info, uint32_t i) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : -1;
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  if (fd > 2) close(fd);
  return info.Env().Undefined();
}

// isPtyMaster(fd): a session hands us this fd; only a pty master (the ptmx
// character device, with a pty number) is accepted.
Napi::Value IsPtyMaster(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  struct stat st;
  unsigned int ptn = 0;
  bool ok = fd > 2 && fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 2 &&
            ioctl(fd, TIOCGPTN, &ptn) == 0;
  return Napi::Boolean::New(info.Env(), ok);
}

// setWinsize(fd, cols, rows) on a pty master; the kernel signals SIGWINCH.
Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0), cols = FdArg(info, 1), rows = FdArg(info, 2);
  if (fd < 0 || cols < 1 || cols > 1000 || rows < 1 || rows > 500) return ThrowErrno(env, "setWinsize", EINVAL);
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_col = static_cast<unsigned short>(cols);
  ws.ws_row = static_cast<unsigned short>(rows);
  if (ioctl(fd, TIOCSWINSZ, &ws) < 0) return ThrowErrno(env, "TIOCSWINSZ", errno);
  return env.Undefined();
}

const enclave::Export kExports[] = {
    {"pipe", enclave::Fn<Pipe>},
    {"closeFd", enclave::Fn<CloseFd>},
    {"isPtyMaster", enclave::Fn<IsPtyMaster>},
    {"setWinsize", enclave::Fn<SetWinsize>},
};

}  // namespace

void enclave::RegisterFds(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
