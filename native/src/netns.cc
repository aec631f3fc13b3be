// Namespace handles. A namespace is held by an fd. Work inside another network namespace runs on
// the calling thread between two setns() calls and never returns to JavaScript or libuv in between
// (a thread that setns()es and goes back to its work would run that work in the wrong namespace).
// createNetns() still unshares on a throwaway thread: a thread cannot leave a namespace it unshared.
#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "errno.h"

int RunInNetns(int nsfd, const std::function<void()>& fn) {
  // this thread's own namespace, to come back to (opened once per thread; Node's threads never move)
  static thread_local int home = -1;
  if (home < 0) {
    home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) return errno;
  }
  if (setns(nsfd, CLONE_NEWNET) < 0) return errno;
  struct Return {  // also when fn throws
    int fd;
    ~Return() {
      if (setns(fd, CLONE_NEWNET) < 0) {
        // every later socket and netlink request of this process would go to the wrong namespace
        std::fprintf(stderr, "nspawn-ts: cannot return to the process's network namespace (errno %d); aborting\n", errno);
        std::abort();
      }
    }
  } back{home};
  fn();
  return 0;
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
