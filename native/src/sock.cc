// Raw socket syscalls that Node's net/dgram do not offer: netlink, AF_PACKET, SO_BINDTODEVICE,
// sockets made inside another network namespace. Sockets are always non-blocking and close-on-exec;
// readiness comes from uv_poll (FdWatcher), so no thread ever blocks in recv.
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "errno.h"
#include "netns.h"

static Napi::Uint8Array ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a Uint8Array");
  }
  return info[i].As<Napi::Uint8Array>();
}

// socket(domain, type, protocol, netnsFd?) -> fd
static Napi::Value Socket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int domain = ArgInt(info, 0, "domain");
  int type = ArgInt(info, 1, "type") | SOCK_NONBLOCK | SOCK_CLOEXEC;
  int protocol = ArgInt(info, 2, "protocol");
  int fd = -1, err = 0;
  if (ArgIsPresent(info, 3)) {
    int nsfd = ArgInt(info, 3, "netnsFd");
    int nserr = RunInNetns(nsfd, [&]() {
      fd = socket(domain, type, protocol);
      if (fd < 0) err = errno;
    });
    if (nserr) throw ErrnoError(env, nserr, "setns", "(network namespace fd " + std::to_string(nsfd) + ")");
  } else {
    fd = socket(domain, type, protocol);
    if (fd < 0) err = errno;
  }
  if (fd < 0) throw ErrnoError(env, err, "socket");
  return Napi::Number::New(env, fd);
}

// bind(fd, sockaddr bytes)
static Napi::Value Bind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto addr = ArgBytes(info, 1, "sockaddr");
  if (bind(fd, reinterpret_cast<const sockaddr*>(addr.Data()), addr.ByteLength()) < 0) {
    throw ErrnoError(env, errno, "bind");
  }
  return env.Undefined();
}

// connect(fd, sockaddr bytes); EINPROGRESS is thrown like any errno.
static Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto addr = ArgBytes(info, 1, "sockaddr");
  if (connect(fd, reinterpret_cast<const sockaddr*>(addr.Data()), addr.ByteLength()) < 0) {
    throw ErrnoError(env, errno, "connect");
  }
  return env.Undefined();
}

// setsockoptInt(fd, level, name, value)
static Napi::Value SetsockoptInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd"), level = ArgInt(info, 1, "level"), name = ArgInt(info, 2, "name");
  int value = ArgInt(info, 3, "value");
  if (setsockopt(fd, level, name, &value, sizeof value) < 0) throw ErrnoError(env, errno, "setsockopt");
  return env.Undefined();
}

// setsockoptBytes(fd, level, name, bytes): SO_BINDTODEVICE, SO_ATTACH_FILTER and the like.
static Napi::Value SetsockoptBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd"), level = ArgInt(info, 1, "level"), name = ArgInt(info, 2, "name");
  auto value = ArgBytes(info, 3, "value");
  if (setsockopt(fd, level, name, value.Data(), value.ByteLength()) < 0) throw ErrnoError(env, errno, "setsockopt");
  return env.Undefined();
}

// getsockoptInt(fd, level, name) -> value
static Napi::Value GetsockoptInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd"), level = ArgInt(info, 1, "level"), name = ArgInt(info, 2, "name");
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, level, name, &value, &len) < 0) throw ErrnoError(env, errno, "getsockopt");
  return Napi::Number::New(env, value);
}

// getsockoptBytes(fd, level, name, maxLength) -> the option's bytes (SO_PEERCRED's struct ucred, …)
static Napi::Value GetsockoptBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd"), level = ArgInt(info, 1, "level"), name = ArgInt(info, 2, "name");
  int max = ArgInt(info, 3, "maxLength");
  if (max < 0 || max > 65536) throw Napi::RangeError::New(env, "argument 'maxLength' must be 0..65536");
  std::vector<uint8_t> value(static_cast<size_t>(max));
  socklen_t len = static_cast<socklen_t>(max);
  if (getsockopt(fd, level, name, value.data(), &len) < 0) throw ErrnoError(env, errno, "getsockopt");
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), len);
}

// getsockname(fd) -> sockaddr bytes
static Napi::Value Getsockname(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) throw ErrnoError(env, errno, "getsockname");
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(&ss), len);
}

// sendto(fd, data, sockaddr?) -> bytes sent. EAGAIN is thrown (code 'EAGAIN'): callers that can
// fill a socket buffer wait for writability with FdWatcher.
static Napi::Value Sendto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto data = ArgBytes(info, 1, "data");
  const sockaddr* sa = nullptr;
  socklen_t salen = 0;
  if (ArgIsPresent(info, 2)) {
    auto addr = ArgBytes(info, 2, "sockaddr");
    sa = reinterpret_cast<const sockaddr*>(addr.Data());
    salen = addr.ByteLength();
  }
  ssize_t n = RetryEintr([&] { return sendto(fd, data.Data(), data.ByteLength(), MSG_NOSIGNAL, sa, salen); });
  if (n < 0) throw ErrnoError(env, errno, "sendto");
  return Napi::Number::New(env, static_cast<double>(n));
}

// recv(fd, buf, flags, addrBuf?) -> length, or -1 when nothing is waiting (EAGAIN).
// With MSG_TRUNC in flags the real datagram length is returned even when it exceeded buf.
// When addrBuf is given the sender's sockaddr is written into it.
static Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto buf = ArgBytes(info, 1, "buf");
  int flags = ArgIsPresent(info, 2) ? ArgInt(info, 2, "flags") : 0;
  sockaddr* sa = nullptr;
  socklen_t salen = 0;
  if (ArgIsPresent(info, 3)) {
    auto addr = ArgBytes(info, 3, "addrBuf");
    sa = reinterpret_cast<sockaddr*>(addr.Data());
    salen = addr.ByteLength();
  }
  ssize_t n = RetryEintr([&] { return recvfrom(fd, buf.Data(), buf.ByteLength(), flags | MSG_DONTWAIT, sa, sa ? &salen : nullptr); });
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    throw ErrnoError(env, errno, "recvfrom");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// recvCredentials(fd, buf) -> {length, pid, uid, gid} (pid -1 when the datagram carried no
// SCM_CREDENTIALS: SO_PASSCRED was not set), or null when nothing is waiting. File descriptors a
// sender attached (SCM_RIGHTS) are closed: nobody here takes them.
static Napi::Value RecvCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto buf = ArgBytes(info, 1, "buf");
  struct iovec iov = {buf.Data(), buf.ByteLength()};
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n = RetryEintr([&] { return recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC); });
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    throw ErrnoError(env, errno, "recvmsg");
  }
  struct ucred cred = {-1, static_cast<uid_t>(-1), static_cast<gid_t>(-1)};
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof cred)) {
      memcpy(&cred, CMSG_DATA(c), sizeof cred);
    } else if (c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int passed;
        memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
        close(passed);
      }
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("length", Napi::Number::New(env, static_cast<double>(n)));
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, static_cast<int32_t>(cred.uid)));
  out.Set("gid", Napi::Number::New(env, static_cast<int32_t>(cred.gid)));
  return out;
}

// close(fd)
static Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (close(fd) < 0 && errno != EINTR) throw ErrnoError(env, errno, "close");
  return env.Undefined();
}

// pollFd(fd, events, timeoutMs) -> the events that came (readable 1, writable 2, error or hang-up
// 4), 0 when the time ran out. A blocking wait, for a short-lived process that has nothing else to
// do meanwhile (nspawn-cni waiting for the sidecar's answer); servers watch with FdWatcher.
static Napi::Value PollFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd"), events = ArgInt(info, 1, "events"), timeout = ArgInt(info, 2, "timeoutMs");
  pollfd p = {fd, static_cast<short>(((events & 1) ? POLLIN : 0) | ((events & 2) ? POLLOUT : 0)), 0};
  int n = RetryEintr([&] { return poll(&p, 1, timeout); });
  if (n < 0) throw ErrnoError(env, errno, "poll");
  if (n == 0) return Napi::Number::New(env, 0);
  int ev = ((p.revents & POLLIN) ? 1 : 0) | ((p.revents & POLLOUT) ? 2 : 0) | ((p.revents & (POLLERR | POLLHUP | POLLNVAL)) ? 4 : 0);
  return Napi::Number::New(env, ev);
}

// FdWatcher(fd, events, callback): calls callback(events) from the event loop whenever fd is
// readable (1) and/or writable (2). stop() ends it for good; unref() lets the process exit while
// it is armed. It never reads or closes the fd.
class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod("stop", &FdWatcher::Stop), InstanceMethod("ref", &FdWatcher::JsRef),
                        InstanceMethod("unref", &FdWatcher::JsUnref), InstanceMethod("setEvents", &FdWatcher::SetEvents)});
  }

  FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    int fd = ArgInt(info, 0, "fd");
    events_ = ArgInt(info, 1, "events");
    if (info.Length() < 3 || !info[2].IsFunction()) throw Napi::TypeError::New(env, "argument 'callback' must be a function");
    callback_ = Napi::Persistent(info[2].As<Napi::Function>());
    env_ = env;
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, fd);
    if (rc < 0) {
      delete handle_;
      handle_ = nullptr;
      throw ErrnoError(env, -rc, "uv_poll_init");
    }
    handle_->data = this;
    rc = uv_poll_start(handle_, UvEvents(), OnPoll);
    if (rc < 0) {
      CloseHandle();
      throw ErrnoError(env, -rc, "uv_poll_start");
    }
    Ref();  // keep the JS object alive while armed
  }

  ~FdWatcher() override { CloseHandle(); }

 private:
  int UvEvents() const { return ((events_ & 1) ? UV_READABLE : 0) | ((events_ & 2) ? UV_WRITABLE : 0); }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    auto* self = static_cast<FdWatcher*>(h->data);
    if (!self) return;
    Napi::HandleScope scope(self->env_);
    int ev = status < 0 ? 4 : (((events & UV_READABLE) ? 1 : 0) | ((events & UV_WRITABLE) ? 2 : 0));
    try {
      self->callback_.Call({Napi::Number::New(self->env_, ev)});
    } catch (const Napi::Error& e) {
      // An exception in a poll callback has no JS caller to go to: surface it like Node does.
      napi_fatal_exception(self->env_, e.Value());
    }
  }

  void CloseHandle() {
    if (!handle_) return;
    uv_poll_stop(handle_);
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_) {
      CloseHandle();
      Unref();  // drop the self-reference taken in the constructor
    }
    return info.Env().Undefined();
  }
  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    if (handle_) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }
  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    if (handle_) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }
  Napi::Value SetEvents(const Napi::CallbackInfo& info) {
    events_ = ArgInt(info, 0, "events");
    if (handle_) uv_poll_start(handle_, UvEvents(), OnPoll);
    return info.Env().Undefined();
  }

  Napi::FunctionReference callback_;
  Napi::Env env_{nullptr};
  uv_poll_t* handle_ = nullptr;
  int events_ = 1;
};

void InitSock(Napi::Env env, Napi::Object exports) {
  ExportFunctions(env, exports, {
      {"socket", Socket},               {"bind", Bind},                       {"connect", Connect},
      {"setsockoptInt", SetsockoptInt}, {"setsockoptBytes", SetsockoptBytes}, {"getsockoptInt", GetsockoptInt},
      {"getsockoptBytes", GetsockoptBytes},
      {"getsockname", Getsockname},     {"sendto", Sendto},                   {"recv", Recv},
      {"recvCredentials", RecvCredentials},
      {"close", Close},                 {"pollFd", PollFd},
  });
  exports.Set("FdWatcher", FdWatcher::Define(env));
}
