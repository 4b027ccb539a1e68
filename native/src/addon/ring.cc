// A console's output ring in shared memory: a memfd the daemon maps and
// writes, and hands the session's init to keep (native/src/agent.h, "keep"),
// so a console's screen outlives the daemon. Layout and limits are
// agent.h's RING_* (the generated contract carries them to TypeScript).
//   ringCreate(capacity)  -> { fd, buffer }: a new ring, header written
//   ringMap(fd)           -> buffer: an existing ring (a new daemon's), checked
// The buffer is the whole mapping (header, then data); it is unmapped when
// the buffer is collected. Native because Node has neither memfd nor mmap.
#include "shared.h"

#include "../agent.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using enclave::ThrowErrno;

Napi::Value Mapped(Napi::Env env, void* p, size_t len) {
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(p), len, [len](Napi::Env, uint8_t* data) { munmap(data, len); });
}

// ringCreate(capacity): memfd of RING_HEADER + capacity bytes, mapped shared.
Napi::Value RingCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowErrno(env, "ringCreate", EINVAL);
  int64_t cap = info[0].As<Napi::Number>().Int64Value();
  if (cap <= 0 || cap > RING_MAX) return ThrowErrno(env, "ringCreate", EINVAL);
  size_t len = RING_HEADER + static_cast<size_t>(cap);
  int fd = memfd_create("enclave-console-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ThrowErrno(env, "memfd_create", errno);
  // Sealed at its size: whoever holds it (the session's init) cannot shrink
  // it under our mapping, which would fault the daemon (SIGBUS) on access.
  if (ftruncate(fd, static_cast<off_t>(len)) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
    int e = errno;
    close(fd);
    return ThrowErrno(env, "memfd", e);
  }
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return ThrowErrno(env, "mmap", e);
  }
  uint32_t magic = RING_MAGIC;
  uint64_t capacity = static_cast<uint64_t>(cap);
  std::memcpy(static_cast<char*>(p), &magic, sizeof magic);
  std::memcpy(static_cast<char*>(p) + RING_CAPACITY_AT, &capacity, sizeof capacity);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("buffer", Mapped(env, p, len));
  return out;
}

// ringMap(fd): an existing ring the init kept, its size and header checked
// (it was in a session's memory: untrusted). The fd stays the caller's.
Napi::Value RingMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowErrno(env, "ringMap", EINVAL);
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct stat st;
  if (fstat(fd, &st) < 0) return ThrowErrno(env, "fstat", errno);
  if (!S_ISREG(st.st_mode) || st.st_size <= RING_HEADER || st.st_size > RING_HEADER + RING_MAX) return ThrowErrno(env, "ringMap", EINVAL);
  // Only a ring sealed against shrinking: one that could shrink could fault us.
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) return ThrowErrno(env, "ringMap", EPERM);
  size_t len = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ThrowErrno(env, "mmap", errno);
  uint32_t magic;
  uint64_t cap;
  std::memcpy(&magic, p, sizeof magic);
  std::memcpy(&cap, static_cast<char*>(p) + RING_CAPACITY_AT, sizeof cap);
  if (magic != RING_MAGIC || cap != len - RING_HEADER) {
    munmap(p, len);
    return ThrowErrno(env, "ringMap", EINVAL);
  }
  return Mapped(env, p, len);
}

const enclave::Export kExports[] = {
    {"ringCreate", enclave::Fn<RingCreate>},
    {"ringMap", enclave::Fn<RingMap>},
};

}  // namespace

void enclave::RegisterRing(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
