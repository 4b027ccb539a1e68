// The daemon's nftables table: rulesets applied atomically.
//   nftApply(script)  a Promise, settled from the thread pool (a commit can
//                     wait on the kernel); rejects with nft's message
// Native because the alternative is an nft(8) process per change; this goes
// through libnftables in-process (native/src/nft.c loads it with dlopen).
// The scripts themselves are written in TypeScript (src/network/firewall.ts).
#include "shared.h"
#include "../nft.h"

#include <string>
#include <utility>

namespace {

using enclave::PromiseWorker;
using enclave::QueueWithString;

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

const enclave::Export kExports[] = {
    {"nftApply", enclave::Fn<NftApplyFn>},
};

}  // namespace

void enclave::RegisterNft(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
