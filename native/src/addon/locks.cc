// Lock files that keep two daemons on one host off the same resources
// (src/daemon/locks.ts decides which; here only the lock).
//   lockFile(path, content)  an exclusive flock(2), with content written in
//   unlockFile(path, fd)     unlink while still holding it, then let go
// Native because Node has no flock(2): a lock the kernel drops when its
// holder dies, however it dies.
#include "shared.h"

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using enclave::ThrowErrno;

// lockFile(path, content): an exclusive flock(2) on path, held as long as the
// returned fd is open (the kernel drops it when the process dies, however it
// dies); the file then says who holds it. -1 if another process holds it.
// The holder unlinks the file before it lets go (unlockFile), so a lock taken
// on a file that was unlinked meanwhile is retried on the new one.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "lockFile(path: string, content: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value(), content = info[1].As<Napi::String>().Utf8Value();
  for (int attempt = 0; attempt < 100; attempt++) {
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return ThrowErrno(env, path.c_str(), errno);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
      int e = errno;
      close(fd);
      if (e == EWOULDBLOCK) return Napi::Number::New(env, -1);
      return ThrowErrno(env, path.c_str(), e);
    }
    struct stat held, named;
    if (fstat(fd, &held) < 0 || stat(path.c_str(), &named) < 0 || held.st_ino != named.st_ino || held.st_dev != named.st_dev) {
      close(fd); // its holder unlinked it as we opened it: take the new one
      continue;
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, content.data(), content.size(), 0) != static_cast<ssize_t>(content.size())) {
      int e = errno;
      close(fd);
      return ThrowErrno(env, path.c_str(), e);
    }
    return Napi::Number::New(env, fd);
  }
  return ThrowErrno(env, path.c_str(), EAGAIN);
}

// unlockFile(path, fd): unlink while still holding the lock, then let go.
Napi::Value UnlockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "unlockFile(path: string, fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = info[1].As<Napi::Number>().Int32Value();
  struct stat held, named;
  if (fstat(fd, &held) == 0 && stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino && held.st_dev == named.st_dev) unlink(path.c_str());
  if (fd > 2) close(fd);
  return env.Undefined();
}

const enclave::Export kExports[] = {
    {"lockFile", enclave::Fn<LockFile>},
    {"unlockFile", enclave::Fn<UnlockFile>},
};

}  // namespace

void enclave::RegisterLocks(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
