// OOM kills inside a v1 memory cgroup.
//   OomWatch(memoryCgroupDir, onEvent)
//                   calls onEvent when the kernel OOM-kills inside the cgroup
//                   (and when the cgroup is removed)
// Native because the notification is an eventfd registered by writing its
// number to cgroup.event_control, and Node has no eventfd.
#include "shared.h"

#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <string>
#include <sys/eventfd.h>
#include <unistd.h>

namespace {

using enclave::FdPoll;
using enclave::ThrowErrno;

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

const enclave::Export kExports[] = {
    {"OomWatch", OomWatch::Define},
};

}  // namespace

void enclave::RegisterOom(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
