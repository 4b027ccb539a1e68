// What the addon's concern files share: errno errors for JS, an fd watched
// on the event loop, the Promise-on-the-thread-pool call, and the export
// table each concern file registers through. No concern lives here.
#ifndef ENCLAVE_ADDON_SHARED_H
#define ENCLAVE_ADDON_SHARED_H

#include <napi.h>
#include <uv.h>

#include <cstddef>
#include <string>

namespace enclave {

// Error("<what>: <strerror(err)>") with .errno = err.
Napi::Error ErrnoError(Napi::Env env, const char* what, int err);

// Throws ErrnoError; returns undefined, for `return ThrowErrno(...)`.
Napi::Value ThrowErrno(Napi::Env env, const char* what, int err);

// An fd watched for readability on the Node event loop. Stop() ends the
// watch and closes the fd; the poll handle is freed once libuv lets go of it.
struct FdPoll {
  int fd = -1;
  uv_poll_t* poll = nullptr;

  void Start(Napi::Env env, void* owner, uv_poll_cb onReadable);
  void Stop();
};

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

// One entry of a concern's export table: the name JS sees and what makes
// the value (a function, or a class's constructor). The tables are the
// addon's export list; test/unit/native.test.ts checks the loaded addon
// against the names src/native/addon.ts declares.
struct Export {
  const char* name;
  Napi::Function (*make)(Napi::Env env);
};

// A plain function as an export table entry's `make`.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Function Fn(Napi::Env env) {
  return Napi::Function::New(env, F);
}

// Sets each entry on exports; a name set twice throws (no silent override).
void Register(Napi::Env env, Napi::Object exports, const Export* table, size_t count);

template <size_t N>
void Register(Napi::Env env, Napi::Object exports, const Export (&table)[N]) {
  Register(env, exports, table, N);
}

// One registration function per concern file (native/src/addon/<concern>.cc),
// called by native/src/addon.cc.
void RegisterCredentials(Napi::Env env, Napi::Object exports);
void RegisterPidfd(Napi::Env env, Napi::Object exports);
void RegisterOom(Napi::Env env, Napi::Object exports);
void RegisterControl(Napi::Env env, Napi::Object exports);
void RegisterFds(Napi::Env env, Napi::Object exports);
void RegisterLocks(Napi::Env env, Napi::Object exports);
void RegisterNotify(Napi::Env env, Napi::Object exports);
void RegisterRing(Napi::Env env, Napi::Object exports);
void RegisterOverlay(Napi::Env env, Napi::Object exports);
void RegisterNetlink(Napi::Env env, Napi::Object exports);
void RegisterNft(Napi::Env env, Napi::Object exports);
void RegisterPorts(Napi::Env env, Napi::Object exports);
void RegisterSpawn(Napi::Env env, Napi::Object exports);

}  // namespace enclave

#endif
