// The daemon's end of a session init's control channel (native/src/agent.h).
//   ControlChannel(path, onMessage, onClose)
//                   SEQPACKET datagrams of NUL-terminated fields, fds
//                   passed with SCM_RIGHTS (at most one per message in, up to
//                   three out)
// Native because Node has no SOCK_SEQPACKET sockets and cannot pass fds
// (SCM_RIGHTS) over a Unix socket.
#include "shared.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <vector>

namespace {

using enclave::FdPoll;
using enclave::ThrowErrno;

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

const enclave::Export kExports[] = {
    {"ControlChannel", ControlChannel::Define},
};

}  // namespace

void enclave::RegisterControl(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
