// Packet-socket helpers the generic socket calls cannot express: attaching a classic BPF program
// (struct sock_fprog holds a pointer, so the bytes cannot go through setsockoptBytes). The program
// itself is assembled and tested in TypeScript (src/dhcp/bpf.ts); this only hands it to the kernel.
#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>

#include "errno.h"

// attachFilter(fd, program): program is a Uint8Array of struct sock_filter records (8 bytes each,
// host byte order: u16 code, u8 jt, u8 jf, u32 k). Replaces any filter already attached.
static Napi::Value AttachFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (info.Length() < 2 || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(env, "argument 'program' must be a Uint8Array");
  }
  auto prog = info[1].As<Napi::Uint8Array>();
  size_t len = prog.ByteLength();
  if (len == 0 || len % sizeof(sock_filter) != 0 || len / sizeof(sock_filter) > BPF_MAXINSNS) {
    throw Napi::RangeError::New(env, "argument 'program' must be 1.." + std::to_string(BPF_MAXINSNS) +
                                         " instructions of 8 bytes");
  }
  sock_fprog fprog;
  fprog.len = static_cast<unsigned short>(len / sizeof(sock_filter));
  fprog.filter = reinterpret_cast<sock_filter*>(prog.Data());
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0) {
    throw ErrnoError(env, errno, "setsockopt", "(SO_ATTACH_FILTER)");
  }
  return env.Undefined();
}

void InitPacket(Napi::Env env, Napi::Object exports) {
  exports.Set("attachFilter", Napi::Function::New(env, AttachFilter));
}
