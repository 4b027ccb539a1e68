// The addon's shared helpers (shared.h): errno errors, FdPoll, Register.
#include "shared.h"

#include <cstring>
#include <unistd.h>

namespace enclave {

Napi::Error ErrnoError(Napi::Env env, const char* what, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(what) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

Napi::Value ThrowErrno(Napi::Env env, const char* what, int err) {
  ErrnoError(env, what, err).ThrowAsJavaScriptException();
  return env.Undefined();
}

void FdPoll::Start(Napi::Env env, void* owner, uv_poll_cb onReadable) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  poll = new uv_poll_t;
  poll->data = owner;
  uv_poll_init(loop, poll, fd);
  uv_poll_start(poll, UV_READABLE, onReadable);
}

void FdPoll::Stop() {
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

void Register(Napi::Env env, Napi::Object exports, const Export* table, size_t count) {
  for (size_t i = 0; i < count && !env.IsExceptionPending(); i++) {
    if (exports.Has(table[i].name)) {
      Napi::Error::New(env, std::string("enclave_addon: export ") + table[i].name + " registered twice")
          .ThrowAsJavaScriptException();
      return;
    }
    exports.Set(table[i].name, table[i].make(env));
  }
}

}  // namespace enclave
