// Process lifetimes: watching, signalling and reaping processes by pidfd.
//   ProcessWatch(pid, startTime, onExit)
//                        pins a process with a pidfd (refusing a reused PID),
//                        signals it race-free, and calls onExit once when it
//                        exits, reaping it if it is our child
//   setChildSubreaper()  session inits re-parent to the daemon, not PID 1
//   reapChild(pid)       waitpid(pid, WNOHANG) for adopted children
//   setHostname(pid, startTime, name)
//                        sethostname in the UTS namespace of the pinned
//                        process (a pool member handed out with a name)
// Native because Node has no pidfd_open, pidfd_send_signal, waitid(P_PIDFD)
// or PR_SET_CHILD_SUBREAPER: process.kill(pid) can hit a reused PID, and
// libuv waits only for the children it spawned itself.
#include "shared.h"
#include "../procstat.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sched.h>
#include <string>
#include <thread>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace {

using enclave::FdPoll;
using enclave::ThrowErrno;

Napi::Value SetChildSubreaper(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) return ThrowErrno(info.Env(), "PR_SET_CHILD_SUBREAPER", errno);
  return info.Env().Undefined();
}

Napi::Value ReapChild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "reapChild(pid: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  pid_t pid = info[0].As<Napi::Number>().Int32Value();
  int status = 0;
  pid_t r = waitpid(pid, &status, WNOHANG);
  return Napi::Boolean::New(env, r == pid);
}

class ProcessWatch : public Napi::ObjectWrap<ProcessWatch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ProcessWatch",
                       {InstanceMethod("kill", &ProcessWatch::Kill), InstanceMethod("close", &ProcessWatch::Close)});
  }

  // new ProcessWatch(pid, startTime, onExit(status | null))
  explicit ProcessWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessWatch>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsFunction()) {
      Napi::TypeError::New(env, "new ProcessWatch(pid: number, startTime: string, onExit: function)")
          .ThrowAsJavaScriptException();
      return;
    }
    pid_ = info[0].As<Napi::Number>().Int32Value();
    std::string startStr = info[1].As<Napi::String>().Utf8Value();
    unsigned long long want = strtoull(startStr.c_str(), nullptr, 10);
    watch_.fd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    if (watch_.fd < 0) {
      ThrowErrno(env, "pidfd_open", errno);
      return;
    }
    unsigned long long actual = 0;
    // After pidfd_open the fd pins whatever holds the PID now; only keep it
    // if that is the process we recorded.
    if (read_start_time(pid_, &actual) < 0 || actual != want) {
      watch_.Stop();
      ThrowErrno(env, "process identity", ESRCH);
      return;
    }
    callback_ = Napi::Persistent(info[2].As<Napi::Function>());
    watch_.Start(env, this, OnReadable);
    Ref();  // alive while the poll is active, even if JS drops the object
  }

  ~ProcessWatch() override { watch_.Stop(); }

 private:
  static void OnReadable(uv_poll_t* handle, int, int) {
    auto* self = static_cast<ProcessWatch*>(handle->data);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Value result = env.Null();
    siginfo_t si;
    memset(&si, 0, sizeof si);
    // Reap it if it is our child (subreaper); otherwise its parent will.
    if (syscall(SYS_waitid, P_PIDFD, self->watch_.fd, &si, WEXITED | WNOHANG, nullptr) == 0 && si.si_pid != 0) {
      Napi::Object st = Napi::Object::New(env);
      bool signaled = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
      st.Set("code", signaled ? env.Null() : Napi::Number::New(env, si.si_status));
      st.Set("signal", signaled ? Napi::Number::New(env, si.si_status) : env.Null());
      result = st;
    }
    Napi::FunctionReference cb = std::move(self->callback_);
    self->watch_.Stop();
    self->Unref();
    if (!cb.IsEmpty()) cb.MakeCallback(env.Global(), {result});
  }

  Napi::Value Kill(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int sig = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : SIGTERM;
    if (watch_.fd < 0) return Napi::Boolean::New(env, false);
    if (syscall(SYS_pidfd_send_signal, watch_.fd, sig, nullptr, 0) < 0) {
      if (errno == ESRCH) return Napi::Boolean::New(env, false);
      return ThrowErrno(env, "pidfd_send_signal", errno);
    }
    return Napi::Boolean::New(env, true);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (watch_.poll) {
      watch_.Stop();
      callback_.Reset();
      Unref();
    }
    return info.Env().Undefined();
  }

  pid_t pid_ = -1;
  FdPoll watch_;
  Napi::FunctionReference callback_;
};

// setHostname(pid, startTime, name): the process is pinned by a pidfd and
// checked to be the recorded one, then a thread of its own joins its UTS
// namespace (setns moves only the calling thread) and sets the name there;
// the daemon's own threads never leave the host's. Throws with errno.
Napi::Value SetHostname(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsString()) {
    Napi::TypeError::New(env, "setHostname(pid: number, startTime: string, name: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  pid_t pid = info[0].As<Napi::Number>().Int32Value();
  unsigned long long want = strtoull(info[1].As<Napi::String>().Utf8Value().c_str(), nullptr, 10);
  std::string name = info[2].As<Napi::String>().Utf8Value();
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return ThrowErrno(env, "pidfd_open", errno);
  unsigned long long actual = 0;
  if (read_start_time(pid, &actual) < 0 || actual != want) {
    close(fd);
    return ThrowErrno(env, "process identity", ESRCH);
  }
  int err = 0;
  std::thread t([&] {
    if (setns(fd, CLONE_NEWUTS) < 0) err = errno;
    else if (sethostname(name.data(), name.size()) < 0) err = errno;
  });
  t.join();
  close(fd);
  if (err != 0) return ThrowErrno(env, "sethostname", err);
  return env.Undefined();
}

const enclave::Export kExports[] = {
    {"ProcessWatch", ProcessWatch::Define},
    {"setChildSubreaper", enclave::Fn<SetChildSubreaper>},
    {"reapChild", enclave::Fn<ReapChild>},
    {"setHostname", enclave::Fn<SetHostname>},
};

}  // namespace

void enclave::RegisterPidfd(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
