{
  "targets": [
    {
      "target_name": "nspawn_native",
      "sources": [
        "src/addon.cc",
        "src/errno.cc",
        "src/sock.cc",
        "src/netns.cc",
        "src/nft.cc",
        "src/container.cc",
        "src/lock.cc",
        "src/enter.cc",
        "src/packet.cc",
        "src/proc-setup.cc",
        "src/fsat.cc",
        "src/pages.cc",
        "src/exit.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
