// Namespace handles. A namespace is held by an fd; entering one happens on a throwaway thread so
// the JS thread and libuv's pool never change namespace (a thread that setns()es and returns to a
// pool would run later work in the wrong namespace).
#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "errno.h"

int RunInNetns(int nsfd, const std::function<void()>& fn) {
  int err = 0;
  std::thread t([&]() {
    if (setns(nsfd, CLONE_NEWNET) < 0) {
      err = errno;
      return;
    }
    fn();
  });
  t.join();
  return err;
}

// openNamespace(path) -> fd: opens /run/netns/NAME, /proc/PID/ns/net and the like, O_CLOEXEC.
static Napi::Value OpenNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "argument 'path' must be a string");
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, errno, "open", path);
  return Napi::Number::New(env, fd);
}

// createNetns() -> fd of a new, empty network namespace (only lo, down). It lives while the fd is
// open (or while something else holds it: a bind mount, a process, a socket).
static Napi::Value CreateNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1, err = 0;
  const char* failed = "unshare";
  std::thread t([&]() {
    if (unshare(CLONE_NEWNET) < 0) {
      err = errno;
      return;
    }
    fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      err = errno;
      failed = "open";
    }
  });
  t.join();
  if (err) throw ErrnoError(env, err, failed, "(new network namespace)");
  return Napi::Number::New(env, fd);
}

// namespaceId(fd) -> "dev:ino", equal for two fds of the same namespace.
static Napi::Value NamespaceId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  struct stat st;
  if (fstat(fd, &st) < 0) throw ErrnoError(env, errno, "fstat");
  return Napi::String::New(env, std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
}

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("openNamespace", Napi::Function::New(env, OpenNamespace));
  exports.Set("createNetns", Napi::Function::New(env, CreateNetns));
  exports.Set("namespaceId", Napi::Function::New(env, NamespaceId));
}
