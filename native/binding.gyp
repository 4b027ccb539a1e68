{
  "variables": { "helper_cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"] },
  "targets": [
    {
      "target_name": "enclave_addon",
      "sources": [
        "src/addon.cc",
        "src/addon/shared.cc",
        "src/addon/credentials.cc",
        "src/addon/pidfd.cc",
        "src/addon/oom.cc",
        "src/addon/control.cc",
        "src/addon/ring.cc",
        "src/addon/fds.cc",
        "src/addon/locks.cc",
        "src/addon/notify.cc",
        "src/addon/overlay.cc",
        "src/addon/netlink.cc",
        "src/addon/nft.cc",
        "src/addon/ports.cc",
        "src/addon/spawn.cc",
        "src/netlink.c",
        "src/nft.c",
        "src/procstat.c"
      ],
      "libraries": ["-ldl"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
    },
    {
      "target_name": "enclave-init",
      "type": "executable",
      "sources": ["src/init.c", "src/agent.c", "src/boot.c", "src/users.c", "src/plan.c", "src/common.c", "src/harden.c", "src/netlink.c", "src/procstat.c"],
      "cflags": ["<@(helper_cflags)"],
      "ldflags": ["-Wl,-z,relro,-z,now", "-pie"]
    },
    {
      "target_name": "enclave-front",
      "type": "executable",
      "sources": ["src/front.c", "src/front_net.c", "src/front_json.c", "src/front_tty.c"],
      "cflags": ["<@(helper_cflags)"],
      "ldflags": ["-Wl,-z,relro,-z,now", "-pie"]
    }
  ]
}
