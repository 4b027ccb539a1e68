// The in-process half of Enclave's native code: what Node lacks and what
// must not cost a process spawn.
//   peerCred(fd)             SO_PEERCRED of a connected Unix socket
//   peerGroups(fd)           SO_PEERGROUPS: its supplementary groups
//   setChildSubreaper()      session inits re-parent to the daemon, not PID 1
//   ProcessWatch(pid, start, cb)
//                            pins a process with a pidfd (refusing a reused
//                            PID), signals it race-free, and calls cb once
//                            when it exits, reaping it if it is our child
//   reapChild(pid)           waitpid(pid, WNOHANG) for adopted children
//   OomWatch(dir, cb)        OOM events of a v1 memory cgroup (eventfd)
//   ControlChannel(path, onMessage, onClose)
//                            the daemon's end of a session init's control
//                            socket: SEQPACKET datagrams with SCM_RIGHTS
//   pipe(), closeFd(fd), isPtyMaster(fd), setWinsize(fd, cols, rows)
//   spawnHelper(path)        posix_spawn on the thread pool (vfork: no copy of
//                            the daemon's page tables, which libuv's fork
//                            makes), three pipes, a new session, no env
//   nftApply(script)         an nftables script through libnftables, on the
//                            thread pool (a commit can wait on the kernel)
#include <napi.h>
#include <arpa/inet.h>
#include <net/if.h>

#include "netlink.h"
#include "nft.h"
#include "procstat.h"
#include <uv.h>

#include <cerrno>
#include <cstddef>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <termios.h>
#include <vector>
#include <sys/prctl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
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


// The daemon's end of a session's control channel (native/src/agent.h).
// What arrives is untrusted: at most MAX_IN bytes and one fd per message, a
// bounded number of messages per wakeup, and anything malformed closes the
// channel (the session loses exec, the daemon loses nothing).
class ControlChannel : public Napi::ObjectWrap<ControlChannel> {
 public:
  static constexpr size_t MAX_IN = 4096;
  static constexpr int MAX_FIELDS = 8;
  static constexpr int BATCH = 64;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ControlChannel",
                       {InstanceMethod("send", &ControlChannel::Send), InstanceMethod("close", &ControlChannel::Close)});
  }

  // new ControlChannel(path, onMessage(fields, fd | null), onClose(reason))
  explicit ControlChannel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ControlChannel>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsFunction() || !info[2].IsFunction()) {
      Napi::TypeError::New(env, "new ControlChannel(path: string, onMessage: function, onClose: function)").ThrowAsJavaScriptException();
      return;
    }
    std::string path = info[0].As<Napi::String>().Utf8Value();
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) {
      ThrowErrno(env, "control socket path", ENAMETOOLONG);
      return;
    }
    memcpy(sa.sun_path, path.c_str(), path.size());
    io_.fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (io_.fd < 0) {
      ThrowErrno(env, "socket", errno);
      return;
    }
    if (connect(io_.fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
      int err = errno;
      io_.Stop();
      ThrowErrno(env, "connect to the session's control socket", err);
      return;
    }
    onMessage_ = Napi::Persistent(info[1].As<Napi::Function>());
    onClose_ = Napi::Persistent(info[2].As<Napi::Function>());
    io_.Start(env, this, OnReadable);
    Ref();
  }

  ~ControlChannel() override { io_.Stop(); }

 private:
  static void OnReadable(uv_poll_t* handle, int status, int) {
    auto* self = static_cast<ControlChannel*>(handle->data);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    if (status < 0) return self->Shut("poll error");
    for (int i = 0; i < BATCH && self->io_.fd >= 0; i++) {
      char buf[MAX_IN];
      union {
        char space[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
      } ctl;
      struct iovec iov = {buf, sizeof buf};
      struct msghdr mh;
      memset(&mh, 0, sizeof mh);
      mh.msg_iov = &iov;
      mh.msg_iovlen = 1;
      mh.msg_control = ctl.space;
      mh.msg_controllen = sizeof ctl.space;
      ssize_t n = recvmsg(self->io_.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      std::vector<int> fds;
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t j = 0; j < k; j++) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + j * sizeof(int), sizeof fd);
          fds.push_back(fd);
        }
      }
      const char* why = nullptr;
      if (n < 0) why = "read error";
      else if (n == 0) why = "closed by the session";
      else if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) why = "oversized message";
      else if (buf[n - 1] != '\0') why = "unterminated message";
      else if (fds.size() > 1) why = "more than one fd in a message";
      Napi::Array fields = Napi::Array::New(env);
      if (!why) {
        uint32_t nf = 0;
        for (char* p = buf; p < buf + n; p += strlen(p) + 1) {
          if (nf == MAX_FIELDS) {
            why = "too many fields";
            break;
          }
          fields.Set(nf++, Napi::String::New(env, p));
        }
      }
      if (why) {
        for (int fd : fds) close(fd);
        return self->Shut(why);
      }
      Napi::Value fd = fds.empty() ? env.Null() : Napi::Number::New(env, fds[0]);
      self->onMessage_.MakeCallback(env.Global(), {fields, fd});
    }
  }

  void Shut(const char* why) {
    if (!io_.poll) return;
    Napi::Env env = Env();
    io_.Stop();
    Napi::FunctionReference cb = std::move(onClose_);
    onMessage_.Reset();
    Unref();
    if (!cb.IsEmpty()) cb.MakeCallback(env.Global(), {Napi::String::New(env, why)});
  }

  // send(fields: (string | Buffer)[], fds: number[]): the message is sent
  // whole or not at all; a full socket (a session that stopped reading)
  // throws EAGAIN. A Buffer field goes byte for byte (a secret's value).
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsArray()) {
      Napi::TypeError::New(env, "send(fields: string[], fds: number[])").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (io_.fd < 0) return ThrowErrno(env, "control channel", ENOTCONN);
    Napi::Array fields = info[0].As<Napi::Array>(), fdArr = info[1].As<Napi::Array>();
    std::string buf;
    for (uint32_t i = 0; i < fields.Length(); i++) {
      Napi::Value v = fields.Get(i);
      std::string f = v.IsBuffer() ? std::string(v.As<Napi::Buffer<char>>().Data(), v.As<Napi::Buffer<char>>().Length()) : v.ToString().Utf8Value();
      if (f.find('\0') != std::string::npos) return ThrowErrno(env, "control message field", EINVAL);
      buf += f;
      buf.push_back('\0');
    }
    if (fdArr.Length() > 3) return ThrowErrno(env, "control message fds", EINVAL);
    int fds[3];
    for (uint32_t i = 0; i < fdArr.Length(); i++) fds[i] = fdArr.Get(i).ToNumber().Int32Value();
    union {
      char space[CMSG_SPACE(sizeof(int) * 3)];
      struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {&buf[0], buf.size()};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (fdArr.Length() > 0) {
      mh.msg_control = ctl.space;
      mh.msg_controllen = CMSG_SPACE(sizeof(int) * fdArr.Length());
      struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fdArr.Length());
      memcpy(CMSG_DATA(c), fds, sizeof(int) * fdArr.Length());
    }
    ssize_t r;
    do r = sendmsg(io_.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) return ThrowErrno(env, "send to the session's control socket", errno);
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (io_.poll) {
      io_.Stop();
      onMessage_.Reset();
      onClose_.Reset();
      Unref();
    }
    return info.Env().Undefined();
  }

  FdPoll io_;
  Napi::FunctionReference onMessage_, onClose_;
};

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

// An AsyncWorker that settles a Promise; Execute() runs on the thread pool.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred& deferred() { return deferred_; }

 protected:
  Napi::Promise::Deferred deferred_;
};

// fn(arg: string): the Promise of a W queued with that string.
template <typename W>
Napi::Value QueueWithString(const Napi::CallbackInfo& info, const char* usage) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* w = new W(env, info[0].As<Napi::String>().Utf8Value());
  Napi::Promise p = w->deferred().Promise();
  w->Queue();
  return p;
}

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
      Napi::Error e = Napi::Error::New(env, std::string(what_) + ": " + strerror(errno_));
      e.Set("errno", Napi::Number::New(env, errno_));
      deferred_.Reject(e.Value());
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

// nftApply(script): a Promise, settled from the thread pool.
class NftApply : public PromiseWorker {
 public:
  NftApply(Napi::Env env, std::string script) : PromiseWorker(env), script_(std::move(script)) {}

  void Execute() override {
    char err[1024];
    if (nft_apply(script_.c_str(), err, sizeof err)) error_ = err;
  }
  void OnOK() override {
    if (error_.empty()) deferred_.Resolve(Env().Undefined());
    else deferred_.Reject(Napi::Error::New(Env(), error_).Value());
  }

 private:
  std::string script_;
  std::string error_;
};

Napi::Value NftApplyFn(const Napi::CallbackInfo& info) { return QueueWithString<NftApply>(info, "nftApply(script: string)"); }

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
  exports.Set("nftApply", Napi::Function::New(env, NftApplyFn));
  exports.Set("spawnHelper", Napi::Function::New(env, SpawnHelper));
  exports.Set("OomWatch", OomWatch::Define(env));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred));
  exports.Set("peerGroups", Napi::Function::New(env, PeerGroups));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("reapChild", Napi::Function::New(env, ReapChild));
  exports.Set("ProcessWatch", ProcessWatch::Define(env));
  exports.Set("ControlChannel", ControlChannel::Define(env));
  exports.Set("pipe", Napi::Function::New(env, Pipe));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  exports.Set("notify", Napi::Function::New(env, Notify));
  exports.Set("unlockFile", Napi::Function::New(env, UnlockFile));
  exports.Set("isPtyMaster", Napi::Function::New(env, IsPtyMaster));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize));
  exports.Set("isOpaqueDir", Napi::Function::New(env, IsOpaqueDir));
  return exports;
}

}  // namespace

NODE_API_MODULE(enclave_addon, Init)
