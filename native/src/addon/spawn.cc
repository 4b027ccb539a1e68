// Starting enclave-init, the helper that builds a session.
//   spawnHelper(path)  posix_spawn on the thread pool: three pipes, a new
//                      session, default signals, no environment
// Native because libuv starts a child with fork, which copies the daemon's
// page tables; glibc's posix_spawn is vfork-style and does not. It runs on
// the thread pool: the calling thread waits for the child's exec.
#include "shared.h"
#include "../procstat.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <string>
#include <unistd.h>
#include <utility>

namespace {

using enclave::ErrnoError;
using enclave::PromiseWorker;
using enclave::QueueWithString;

// spawnHelper(path): a Promise of { pid, startTime, stdin, stdout, stderr }
// (parent ends of pipes, close-on-exec). The child gets its own session
// (terminal signals aimed at the daemon never reach it), default signal
// dispositions and mask, no environment. posix_spawn runs on the thread
// pool: the calling thread waits until the child has exec'd (~1.5 ms
// measured), which must not be the event loop. The caller watches the pid
// (ProcessWatch) and owns the fds.
class SpawnHelperWorker : public PromiseWorker {
 public:
  SpawnHelperWorker(Napi::Env env, std::string path) : PromiseWorker(env), path_(std::move(path)) {}

  void Execute() override {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0) return Fail("pipe2", errno);
    if (pipe2(out, O_CLOEXEC) < 0) {
      int e = errno;
      close(in[0]), close(in[1]);
      return Fail("pipe2", e);
    }
    if (pipe2(err, O_CLOEXEC) < 0) {
      int e = errno;
      close(in[0]), close(in[1]), close(out[0]), close(out[1]);
      return Fail("pipe2", e);
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);  // dup2 clears close-on-exec on the target
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);   // a pool thread blocks signals; the helper must not inherit that
    posix_spawnattr_setsigdefault(&attr, &all);  // Node ignores SIGPIPE; neither that
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char* argv[] = {const_cast<char*>(path_.c_str()), nullptr};
    char* envp[] = {nullptr};
    int rc = posix_spawn(&pid_, path_.c_str(), &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]), close(out[1]), close(err[1]);
    if (rc != 0) {
      close(in[1]), close(out[0]), close(err[0]);
      return Fail("posix_spawn", rc);
    }
    read_start_time(pid_, &start_);  // our unreaped child: its pid cannot be reused meanwhile
    fds_[0] = in[1], fds_[1] = out[0], fds_[2] = err[0];
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (errno_) {
      deferred_.Reject(ErrnoError(env, what_, errno_).Value());
      return;
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("pid", Napi::Number::New(env, pid_));
    r.Set("startTime", Napi::String::New(env, std::to_string(start_)));
    r.Set("stdin", Napi::Number::New(env, fds_[0]));
    r.Set("stdout", Napi::Number::New(env, fds_[1]));
    r.Set("stderr", Napi::Number::New(env, fds_[2]));
    deferred_.Resolve(r);
  }

 private:
  void Fail(const char* what, int e) {
    what_ = what;
    errno_ = e;
  }
  std::string path_;
  pid_t pid_ = -1;
  unsigned long long start_ = 0;
  int fds_[3] = {-1, -1, -1};
  const char* what_ = "";
  int errno_ = 0;
};

Napi::Value SpawnHelper(const Napi::CallbackInfo& info) { return QueueWithString<SpawnHelperWorker>(info, "spawnHelper(path: string)"); }

const enclave::Export kExports[] = {
    {"spawnHelper", enclave::Fn<SpawnHelper>},
};

}  // namespace

void enclave::RegisterSpawn(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
