// Open file description locks (fcntl F_OFD_SETLK), the kind systemd's make_lock_file() takes on
// /run/systemd/nspawn-network-zone: flock() and OFD locks do not see each other, so sharing a lock
// with systemd-nspawn needs this one. Non-blocking only: callers poll through the event loop.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errno.h"

namespace {

// ofdLock(fd, type) with type 0 read, 1 write, 2 unlock (F_RDLCK/F_WRLCK/F_UNLCK on the whole
// file) -> true, or false when another description holds a conflicting lock.
Napi::Value OfdLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int type = ArgInt(info, 1, "type");
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type == 0 ? F_RDLCK : type == 1 ? F_WRLCK : F_UNLCK;
  fl.l_whence = SEEK_SET;
  int rc;
  do {
    rc = fcntl(fd, F_OFD_SETLK, &fl);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == EAGAIN || errno == EACCES) return Napi::Boolean::New(env, false);
    throw ErrnoError(env, errno, "fcntl");
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitLock(Napi::Env env, Napi::Object exports) {
  exports.Set("ofdLock", Napi::Function::New(env, OfdLock));
}
