// Packet-socket helpers the generic socket calls cannot express: attaching a classic BPF program
// (struct sock_fprog holds a pointer, so the bytes cannot go through setsockoptBytes), and receiving
// and sending many datagrams per call (recvmmsg/sendmmsg), so a busy DHCP server crosses into the
// kernel and into C++ once per batch rather than once per packet. The program and every byte of the
// datagrams are built and parsed in TypeScript (src/dhcp/bpf.ts, src/dhcp/wire.ts).
#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <vector>

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

static Napi::TypedArray ArgTyped(const Napi::CallbackInfo& info, size_t i, const char* name, napi_typedarray_type type,
                                 const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be " + what);
  }
  return info[i].As<Napi::TypedArray>();
}

// recvBatch(fd, buf, slot, lengths, addrs) -> count, or -1 when nothing is waiting. Receives up to
// lengths.length datagrams without blocking: datagram i lands at buf[i*slot], its length in
// lengths[i] (-1 when it was longer than slot and was cut), its source address at addrs[i*addrSlot]
// where addrSlot = addrs.byteLength / lengths.length.
static Napi::Value RecvBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto buf = ArgTyped(info, 1, "buf", napi_uint8_array, "a Uint8Array").As<Napi::Uint8Array>();
  int slot = ArgInt(info, 2, "slot");
  auto lengths = ArgTyped(info, 3, "lengths", napi_int32_array, "an Int32Array").As<Napi::Int32Array>();
  auto addrs = ArgTyped(info, 4, "addrs", napi_uint8_array, "a Uint8Array").As<Napi::Uint8Array>();
  size_t n = lengths.ElementLength();
  if (slot <= 0 || n == 0 || buf.ByteLength() < n * static_cast<size_t>(slot) || addrs.ByteLength() < n) {
    throw Napi::RangeError::New(env, "recvBatch: buf must hold lengths.length slots, addrs one address each");
  }
  size_t addrSlot = addrs.ByteLength() / n;
  std::vector<mmsghdr> msgs(n);
  std::vector<iovec> iov(n);
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = buf.Data() + i * slot;
    iov[i].iov_len = slot;
    msgs[i].msg_hdr = {};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = addrs.Data() + i * addrSlot;
    msgs[i].msg_hdr.msg_namelen = addrSlot;
  }
  int got;
  do {
    got = recvmmsg(fd, msgs.data(), n, MSG_DONTWAIT, nullptr);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    throw ErrnoError(env, errno, "recvmmsg");
  }
  for (int i = 0; i < got; i++) {
    lengths[i] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : static_cast<int32_t>(msgs[i].msg_len);
  }
  return Napi::Number::New(env, got);
}

// sendBatch(fd, datagrams[], addrs[]) -> how many were sent (stops at the first the kernel refuses;
// EAGAIN and per-datagram errors are not thrown, the count tells). addrs[i] is datagram i's sockaddr.
static Napi::Value SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsArray()) {
    throw Napi::TypeError::New(env, "sendBatch(fd, datagrams, addrs): datagrams and addrs must be arrays");
  }
  auto datagrams = info[1].As<Napi::Array>();
  auto addrs = info[2].As<Napi::Array>();
  uint32_t n = datagrams.Length();
  if (addrs.Length() != n) throw Napi::RangeError::New(env, "sendBatch: one address per datagram");
  std::vector<mmsghdr> msgs(n);
  std::vector<iovec> iov(n);
  std::vector<Napi::Uint8Array> keep;  // the handles keep the views alive across the call
  keep.reserve(2 * n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value d = datagrams[i];
    Napi::Value a = addrs[i];
    if (!d.IsTypedArray() || d.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        !a.IsTypedArray() || a.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Napi::TypeError::New(env, "sendBatch: datagrams and addrs must hold Uint8Arrays");
    }
    auto db = d.As<Napi::Uint8Array>();
    auto ab = a.As<Napi::Uint8Array>();
    keep.push_back(db);
    keep.push_back(ab);
    iov[i].iov_base = db.Data();
    iov[i].iov_len = db.ByteLength();
    msgs[i].msg_hdr = {};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = ab.Data();
    msgs[i].msg_hdr.msg_namelen = ab.ByteLength();
  }
  uint32_t sent = 0;
  while (sent < n) {
    int r = sendmmsg(fd, msgs.data() + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;  // EAGAIN, or this datagram was refused: the caller counts it
    }
    sent += r;
  }
  return Napi::Number::New(env, sent);
}

void InitPacket(Napi::Env env, Napi::Object exports) {
  exports.Set("attachFilter", Napi::Function::New(env, AttachFilter));
  exports.Set("recvBatch", Napi::Function::New(env, RecvBatch));
  exports.Set("sendBatch", Napi::Function::New(env, SendBatch));
}
