// The host side of session networking: the bridge and the links on it.
//   ensureBridge(name, gateway, prefix)  create (or adopt) the bridge, up
//   deleteLink(name)                     delete a link (a session's veth)
//   link(name) / links()                 read one link / all (MTU, bridge, counters)
// Native because Node has no AF_NETLINK sockets; the alternative is an ip(8)
// process per step. The rtnetlink calls are native/src/netlink.c's, shared
// with enclave-init.
#include "shared.h"
#include "../netlink.h"

#include <arpa/inet.h>
#include <cerrno>
#include <net/if.h>
#include <string>
#include <unistd.h>

namespace {

using enclave::ThrowErrno;

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

Napi::Object LinkObject(Napi::Env env, const struct nl_link& l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, l.name));
  o.Set("index", Napi::Number::New(env, l.index));
  o.Set("mtu", Napi::Number::New(env, l.mtu));
  o.Set("master", Napi::Number::New(env, l.master));
  // Byte counters pass 2^53 only after petabytes through one veth.
  o.Set("rxBytes", l.has_stats ? Napi::Value(Napi::Number::New(env, static_cast<double>(l.rx_bytes))) : env.Null());
  o.Set("txBytes", l.has_stats ? Napi::Value(Napi::Number::New(env, static_cast<double>(l.tx_bytes))) : env.Null());
  return o;
}

// link(name): the link of this name in our netns ({name, index, mtu, master,
// rxBytes, txBytes}), or null if there is none.
Napi::Value Link(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "link(name: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = nl_open();
  if (fd < 0) return ThrowErrno(env, "netlink socket", -fd);
  struct nl_link l;
  int rc = nl_link_get(fd, info[0].As<Napi::String>().Utf8Value().c_str(), &l);
  close(fd);
  if (rc == -ENODEV) return env.Null();
  if (rc < 0) return ThrowErrno(env, "read link", -rc);
  return LinkObject(env, l);
}

struct Collected {
  Napi::Env env;
  Napi::Array out;
  uint32_t n;
};

void CollectLink(const struct nl_link* l, void* ctx) {
  Collected* c = static_cast<Collected*>(ctx);
  c->out.Set(c->n++, LinkObject(c->env, *l));
}

// links(): every link of our netns, as link() gives each.
Napi::Value Links(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = nl_open();
  if (fd < 0) return ThrowErrno(env, "netlink socket", -fd);
  Collected c{env, Napi::Array::New(env), 0};
  int rc = nl_link_each(fd, CollectLink, &c);
  // A dump interrupted by a link coming or going may have missed one: a few times more, from the start.
  for (int i = 0; i < 4 && rc == -EAGAIN; i++) {
    c = Collected{env, Napi::Array::New(env), 0};
    rc = nl_link_each(fd, CollectLink, &c);
  }
  close(fd);
  // Still changing after five: the last reading (its callers sweep again later).
  if (rc < 0 && rc != -EAGAIN) return ThrowErrno(env, "list links", -rc);
  return c.out;
}

const enclave::Export kExports[] = {
    {"ensureBridge", enclave::Fn<EnsureBridge>},
    {"deleteLink", enclave::Fn<DeleteLink>},
    {"link", enclave::Fn<Link>},
    {"links", enclave::Fn<Links>},
};

}  // namespace

void enclave::RegisterNetlink(Napi::Env env, Napi::Object exports) { Register(env, exports, kExports); }
