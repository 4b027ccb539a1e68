// The in-process half of Enclave's native code: what Node lacks and what
// must not cost a process spawn.
//   peerCred(fd)             SO_PEERCRED of a connected Unix socket
//   setChildSubreaper()      session inits re-parent to the daemon, not PID 1
//   ProcessWatch(pid, start, cb)
//                            pins a process with a pidfd (refusing a reused
//                            PID), signals it race-free, and calls cb once
//                            when it exits, reaping it if it is our child
//   reapChild(pid)           waitpid(pid, WNOHANG) for adopted children
//   OomWatch(dir, cb)        OOM events of a v1 memory cgroup (eventfd)
#include <napi.h>
#include <arpa/inet.h>
#include <net/if.h>

#include "netlink.h"
#include <uv.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace {

Napi::Value ThrowErrno(Napi::Env env, const char* what, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(what) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ReadStartTime(int pid, unsigned long long* out) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* p = strrchr(buf, ')');
  if (!p) return false;
  p++;
  for (int field = 3; field < 22; field++) {
    p = strchr(p + 1, ' ');
    if (!p) return false;
  }
  *out = strtoull(p + 1, nullptr, 10);
  return true;
}

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

// An fd watched for readability on the Node event loop. Stop() ends the
// watch and closes the fd; the poll handle is freed once libuv lets go of it.
struct FdPoll {
  int fd = -1;
  uv_poll_t* poll = nullptr;

  void Start(Napi::Env env, void* owner, uv_poll_cb onReadable) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll = new uv_poll_t;
    poll->data = owner;
    uv_poll_init(loop, poll, fd);
    uv_poll_start(poll, UV_READABLE, onReadable);
  }

  void Stop() {
    if (poll) {
      uv_poll_stop(poll);
      uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll = nullptr;
    }
    if (fd >= 0) {
      close(fd);
      fd = -1;
    }
  }
};

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
    if (!ReadStartTime(pid_, &actual) || actual != want) {
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

// v1 memory cgroups have no group OOM kill; an eventfd registered through
// cgroup.event_control tells us when the kernel OOM-killed inside the
// cgroup (and when the cgroup is removed), so the daemon can end the session.
class OomWatch : public Napi::ObjectWrap<OomWatch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "OomWatch", {InstanceMethod("close", &OomWatch::Close)});
  }

  // new OomWatch(memoryCgroupDir, onEvent())
  explicit OomWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OomWatch>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "new OomWatch(dir: string, onEvent: function)").ThrowAsJavaScriptException();
      return;
    }
    std::string dir = info[0].As<Napi::String>().Utf8Value();
    watch_.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (watch_.fd < 0) {
      ThrowErrno(env, "eventfd", errno);
      return;
    }
    int cfd = open((dir + "/memory.oom_control").c_str(), O_RDONLY | O_CLOEXEC);
    if (cfd < 0) {
      int err = errno;
      watch_.Stop();
      ThrowErrno(env, "open memory.oom_control", err);
      return;
    }
    std::string reg = std::to_string(watch_.fd) + " " + std::to_string(cfd);
    int ctl = open((dir + "/cgroup.event_control").c_str(), O_WRONLY | O_CLOEXEC);
    ssize_t n = ctl < 0 ? -1 : write(ctl, reg.c_str(), reg.size());
    int err = errno;
    if (ctl >= 0) close(ctl);
    close(cfd);  // the kernel holds its own reference now
    if (n != static_cast<ssize_t>(reg.size())) {
      watch_.Stop();
      ThrowErrno(env, "register OOM eventfd", err);
      return;
    }
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    watch_.Start(env, this, OnReadable);
    Ref();
  }

  ~OomWatch() override { watch_.Stop(); }

 private:
  static void OnReadable(uv_poll_t* handle, int, int) {
    auto* self = static_cast<OomWatch*>(handle->data);
    uint64_t count = 0;
    if (read(self->watch_.fd, &count, sizeof count) != sizeof count) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    if (!self->callback_.IsEmpty()) self->callback_.MakeCallback(env.Global(), {});
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (watch_.poll) {
      watch_.Stop();
      callback_.Reset();
      Unref();
    }
    return info.Env().Undefined();
  }

  FdPoll watch_;
  Napi::FunctionReference callback_;
};

// ensureBridge(name, gatewayAddress, prefix): create (or adopt) the bridge,
// give it the gateway address, IPv6 off, up. Idempotent.
Napi::Value EnsureBridge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "ensureBridge(name: string, gateway: string, prefix: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value(), gw = info[1].As<Napi::String>().Utf8Value();
  int prefix = info[2].As<Napi::Number>().Int32Value();
  struct in_addr addr;
  if (inet_pton(AF_INET, gw.c_str(), &addr) != 1) return ThrowErrno(env, "gateway address", EINVAL);
  int fd = nl_open();
  if (fd < 0) return ThrowErrno(env, "netlink socket", -fd);
  int rc = nl_create_bridge(fd, name.c_str());
  if (rc < 0 && rc != -EEXIST) {
    close(fd);
    return ThrowErrno(env, "create bridge", -rc);
  }
  int idx = static_cast<int>(if_nametoindex(name.c_str()));
  if (!idx) {
    close(fd);
    return ThrowErrno(env, "find bridge", ENODEV);
  }
  // A bridge without a set MAC takes the lowest of its ports' and changes as
  // sessions come and go, leaving sessions with a stale gateway in their ARP
  // cache. Pin it: 02:00 + the gateway address (never a session's).
  const unsigned char* gwb = reinterpret_cast<const unsigned char*>(&addr.s_addr);
  const unsigned char mac[6] = {0x02, 0x00, gwb[0], gwb[1], gwb[2], gwb[3]};
  if ((rc = nl_link_set_mac(fd, idx, mac)) < 0) {
    close(fd);
    return ThrowErrno(env, "set bridge MAC", -rc);
  }
  if ((rc = disable_ipv6(name.c_str())) < 0 || ((rc = nl_addr_add(fd, idx, addr.s_addr, prefix)) < 0 && rc != -EEXIST) ||
      (rc = nl_link_up(fd, idx, 0)) < 0) {
    close(fd);
    return ThrowErrno(env, "configure bridge", -rc);
  }
  close(fd);
  return env.Undefined();
}

// setCloexec(fd): node-pty's forkpty leaves the pty master inheritable, so
// every helper the daemon spawns later would hold every console's master.
Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "setCloexec(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return ThrowErrno(env, "fcntl(FD_CLOEXEC)", errno);
  return env.Undefined();
}

// deleteLink(name): true if deleted, false if there was no such link.
Napi::Value DeleteLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "deleteLink(name: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int idx = static_cast<int>(if_nametoindex(info[0].As<Napi::String>().Utf8Value().c_str()));
  if (!idx) return Napi::Boolean::New(env, false);
  int fd = nl_open();
  if (fd < 0) return ThrowErrno(env, "netlink socket", -fd);
  int rc = nl_link_del(fd, idx);
  close(fd);
  if (rc == -ENODEV) return Napi::Boolean::New(env, false);
  if (rc < 0) return ThrowErrno(env, "delete link", -rc);
  return Napi::Boolean::New(env, true);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("ensureBridge", Napi::Function::New(env, EnsureBridge));
  exports.Set("deleteLink", Napi::Function::New(env, DeleteLink));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec));
  exports.Set("OomWatch", OomWatch::Define(env));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("reapChild", Napi::Function::New(env, ReapChild));
  exports.Set("ProcessWatch", ProcessWatch::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(enclave_addon, Init)
