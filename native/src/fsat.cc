// The *at() system calls Node lacks, for walking host file trees through directory fds
// (src/runtime/file-tree.ts holds the walks): a name is resolved in one directory and never
// through a symlink it does not ask for. File names are bytes (Uint8Array) or strings, and
// readdirFd() returns bytes, so names that are not UTF-8 survive a copy.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "errno.h"

namespace {

// A file name argument: a string or bytes, without NUL (EINVAL otherwise, as the kernel would say
// for a name it cannot be given).
std::string ArgName(const Napi::CallbackInfo& info, size_t i, const char* name) {
  std::string s;
  if (info.Length() > i && info[i].IsString()) {
    s = info[i].As<Napi::String>().Utf8Value();
  } else if (info.Length() > i && info[i].IsTypedArray()) {
    Napi::Uint8Array a = info[i].As<Napi::Uint8Array>();
    s.assign(reinterpret_cast<const char*>(a.Data()), a.ByteLength());
  } else {
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a string or a Uint8Array");
  }
  if (s.find('\0') != std::string::npos) throw ErrnoError(info.Env(), EINVAL, name, "(contains NUL)");
  return s;
}

int64_t ArgInt64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a number");
  }
  return info[i].As<Napi::Number>().Int64Value();
}

Napi::Buffer<uint8_t> Bytes(Napi::Env env, const char* p, size_t n) {
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(p), n);
}

// openat(dirfd, name, flags, mode) -> fd; O_CLOEXEC always.
Napi::Value Openat(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt(info, 0, "dirfd");
  std::string name = ArgName(info, 1, "name");
  int flags = ArgInt(info, 2, "flags");
  int mode = ArgIsPresent(info, 3) ? ArgInt(info, 3, "mode") : 0;
  int fd = RetryEintr([&] { return openat(dirfd, name.c_str(), flags | O_CLOEXEC, mode); });
  if (fd < 0) throw ErrnoError(info.Env(), errno, "openat", name);
  return Napi::Number::New(info.Env(), fd);
}

// fstatat(dirfd, name, flags) -> {dev, ino (bigint), mode, nlink, uid, gid, rdev, size, atime/mtime as [sec, nsec]}
Napi::Value Fstatat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dirfd = ArgInt(info, 0, "dirfd");
  std::string name = ArgName(info, 1, "name");
  int flags = ArgInt(info, 2, "flags");
  struct stat st;
  if (fstatat(dirfd, name.c_str(), &st, flags) < 0) throw ErrnoError(env, errno, "fstatat", name);
  Napi::Object o = Napi::Object::New(env);
  o.Set("dev", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_dev)));
  o.Set("ino", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_ino)));
  o.Set("mode", Napi::Number::New(env, st.st_mode));
  o.Set("nlink", Napi::Number::New(env, static_cast<double>(st.st_nlink)));
  o.Set("uid", Napi::Number::New(env, st.st_uid));
  o.Set("gid", Napi::Number::New(env, st.st_gid));
  o.Set("rdevMajor", Napi::Number::New(env, major(st.st_rdev)));
  o.Set("rdevMinor", Napi::Number::New(env, minor(st.st_rdev)));
  o.Set("size", Napi::Number::New(env, static_cast<double>(st.st_size)));
  Napi::Array at = Napi::Array::New(env, 2);
  at.Set(0u, Napi::Number::New(env, static_cast<double>(st.st_atim.tv_sec)));
  at.Set(1u, Napi::Number::New(env, static_cast<double>(st.st_atim.tv_nsec)));
  Napi::Array mt = Napi::Array::New(env, 2);
  mt.Set(0u, Napi::Number::New(env, static_cast<double>(st.st_mtim.tv_sec)));
  mt.Set(1u, Napi::Number::New(env, static_cast<double>(st.st_mtim.tv_nsec)));
  o.Set("atime", at);
  o.Set("mtime", mt);
  return o;
}

// readdirFd(fd) -> names (bytes) of the directory's entries but . and ..; fd stays open and unmoved
// (a dup is read from the start).
Napi::Value ReaddirFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int dup = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) throw ErrnoError(env, errno, "openat", ".");
  DIR* d = fdopendir(dup);
  if (!d) {
    int e = errno;
    close(dup);
    throw ErrnoError(env, e, "fdopendir");
  }
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    struct dirent* de = readdir(d);
    if (!de) break;
    if (de->d_name[0] == '.' && (de->d_name[1] == 0 || (de->d_name[1] == '.' && de->d_name[2] == 0))) continue;
    names.emplace_back(de->d_name);
  }
  int e = errno;
  closedir(d);
  if (e) throw ErrnoError(env, e, "readdir");
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) out.Set(i, Bytes(env, names[i].data(), names[i].size()));
  return out;
}

// fchownat(dirfd, name, uid, gid, flags)
Napi::Value Fchownat(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt(info, 0, "dirfd");
  std::string name = ArgName(info, 1, "name");
  uid_t uid = static_cast<uid_t>(ArgInt64(info, 2, "uid"));
  gid_t gid = static_cast<gid_t>(ArgInt64(info, 3, "gid"));
  int flags = ArgInt(info, 4, "flags");
  if (fchownat(dirfd, name.c_str(), uid, gid, flags) < 0) throw ErrnoError(info.Env(), errno, "fchownat", name);
  return info.Env().Undefined();
}

// mkdirat(dirfd, name, mode)
Napi::Value Mkdirat(const Napi::CallbackInfo& info) {
  std::string name = ArgName(info, 1, "name");
  if (mkdirat(ArgInt(info, 0, "dirfd"), name.c_str(), ArgInt(info, 2, "mode")) < 0) throw ErrnoError(info.Env(), errno, "mkdirat", name);
  return info.Env().Undefined();
}

// mknodat(dirfd, name, mode (with its S_IF* type), major, minor): device nodes, FIFOs, sockets
Napi::Value Mknodat(const Napi::CallbackInfo& info) {
  std::string name = ArgName(info, 1, "name");
  dev_t dev = makedev(ArgInt64(info, 3, "major"), ArgInt64(info, 4, "minor"));
  if (mknodat(ArgInt(info, 0, "dirfd"), name.c_str(), ArgInt(info, 2, "mode"), dev) < 0) throw ErrnoError(info.Env(), errno, "mknodat", name);
  return info.Env().Undefined();
}

// symlinkat(target, dirfd, name)
Napi::Value Symlinkat(const Napi::CallbackInfo& info) {
  std::string target = ArgName(info, 0, "target");
  std::string name = ArgName(info, 2, "name");
  if (symlinkat(target.c_str(), ArgInt(info, 1, "dirfd"), name.c_str()) < 0) throw ErrnoError(info.Env(), errno, "symlinkat", name);
  return info.Env().Undefined();
}

// readlinkat(dirfd, name) -> target (bytes)
Napi::Value Readlinkat(const Napi::CallbackInfo& info) {
  std::string name = ArgName(info, 1, "name");
  std::vector<char> buf(256);
  for (;;) {
    ssize_t n = readlinkat(ArgInt(info, 0, "dirfd"), name.c_str(), buf.data(), buf.size());
    if (n < 0) throw ErrnoError(info.Env(), errno, "readlinkat", name);
    if (static_cast<size_t>(n) < buf.size()) return Bytes(info.Env(), buf.data(), n);
    if (buf.size() >= 65536) throw ErrnoError(info.Env(), ENAMETOOLONG, "readlinkat", name);
    buf.resize(buf.size() * 4);
  }
}

// linkat(olddirfd, oldname, newdirfd, newname, flags): a hard link (the old name's last
// component is not followed unless AT_SYMLINK_FOLLOW)
Napi::Value Linkat(const Napi::CallbackInfo& info) {
  std::string from = ArgName(info, 1, "oldname");
  std::string to = ArgName(info, 3, "newname");
  if (linkat(ArgInt(info, 0, "olddirfd"), from.c_str(), ArgInt(info, 2, "newdirfd"), to.c_str(), ArgInt(info, 4, "flags")) < 0) {
    throw ErrnoError(info.Env(), errno, "linkat", to);
  }
  return info.Env().Undefined();
}

// utimensat(dirfd, name, atimeSec, atimeNsec, mtimeSec, mtimeNsec, flags); name "" sets the fd's
// own times (futimens)
Napi::Value Utimensat(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt(info, 0, "dirfd");
  std::string name = ArgName(info, 1, "name");
  struct timespec ts[2];
  ts[0].tv_sec = ArgInt64(info, 2, "atimeSec");
  ts[0].tv_nsec = ArgInt64(info, 3, "atimeNsec");
  ts[1].tv_sec = ArgInt64(info, 4, "mtimeSec");
  ts[1].tv_nsec = ArgInt64(info, 5, "mtimeNsec");
  int rc = name.empty() ? futimens(dirfd, ts) : utimensat(dirfd, name.c_str(), ts, ArgInt(info, 6, "flags"));
  if (rc < 0) throw ErrnoError(info.Env(), errno, "utimensat", name);
  return info.Env().Undefined();
}

// Extended attributes of an open file. An O_PATH fd (of a device node, FIFO or socket, which
// are not opened for real) has no f*xattr(): its /proc/self/fd link names the same inode.
std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Napi::Value ListXattrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  std::vector<char> buf(1024);
  ssize_t n;
  for (;;) {
    n = flistxattr(fd, buf.data(), buf.size());
    if (n < 0 && errno == EBADF) n = listxattr(ProcFdPath(fd).c_str(), buf.data(), buf.size());
    if (n >= 0) break;
    if (errno == ENOTSUP) return Napi::Array::New(env, 0);
    if (errno != ERANGE || buf.size() >= (1u << 20)) throw ErrnoError(env, errno, "flistxattr");
    buf.resize(buf.size() * 4);
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t k = 0;
  for (ssize_t i = 0; i < n;) {
    std::string name(buf.data() + i);
    i += name.size() + 1;
    if (!name.empty()) out.Set(k++, Napi::String::New(env, name));
  }
  return out;
}

// getXattr(fd, name) -> value (bytes), or null when the attribute went away meanwhile
Napi::Value GetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  std::string name = ArgName(info, 1, "name");
  std::vector<char> buf(4096);
  for (;;) {
    ssize_t n = fgetxattr(fd, name.c_str(), buf.data(), buf.size());
    if (n < 0 && errno == EBADF) n = getxattr(ProcFdPath(fd).c_str(), name.c_str(), buf.data(), buf.size());
    if (n >= 0) return Bytes(env, buf.data(), n);
    if (errno == ENODATA) return env.Null();
    if (errno != ERANGE || buf.size() >= (1u << 20)) throw ErrnoError(env, errno, "fgetxattr", name);
    buf.resize(buf.size() * 4);
  }
}

// setXattr(fd, name, value)
Napi::Value SetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  std::string name = ArgName(info, 1, "name");
  if (info.Length() < 3 || !info[2].IsTypedArray()) throw Napi::TypeError::New(env, "argument 'value' must be a Uint8Array");
  Napi::Uint8Array v = info[2].As<Napi::Uint8Array>();
  int rc = fsetxattr(fd, name.c_str(), v.Data(), v.ByteLength(), 0);
  if (rc < 0 && errno == EBADF) rc = setxattr(ProcFdPath(fd).c_str(), name.c_str(), v.Data(), v.ByteLength(), 0);
  if (rc < 0) throw ErrnoError(env, errno, "fsetxattr", name);
  return env.Undefined();
}

// Copies [off, end) of in to out with copy_file_range, else read/write; false when neither moved a byte.
bool CopyRange(int in, int out, off_t off, off_t end, bool* plain, int* err) {
  while (off < end) {
    size_t want = static_cast<size_t>(std::min<off_t>(end - off, 1 << 30));
    ssize_t n = -1;
    if (!*plain) {
      off_t o_in = off, o_out = off;
      n = RetryEintr([&] { return copy_file_range(in, &o_in, out, &o_out, want, 0); });
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF)) *plain = true;
      else if (n < 0) { *err = errno; return false; }
    }
    if (*plain) {
      static thread_local std::vector<char> buf(1 << 20);
      ssize_t r = RetryEintr([&] { return pread(in, buf.data(), std::min(want, buf.size()), off); });
      if (r < 0) { *err = errno; return false; }
      for (ssize_t w = 0; w < r;) {
        ssize_t k = RetryEintr([&] { return pwrite(out, buf.data() + w, r - w, off + w); });
        if (k < 0) { *err = errno; return false; }
        w += k;
      }
      n = r;
    }
    if (n == 0) break;  // the source shrank meanwhile
    off += n;
  }
  return true;
}

// copyData(srcFd, dstFd) -> "reflink" | "copy": the contents of a regular file, shared with the
// source (FICLONE) where the file system can, else copied data segment by data segment (holes stay
// holes: SEEK_DATA/SEEK_HOLE) with copy_file_range, else read/write. dst must be empty.
Napi::Value CopyData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int in = ArgInt(info, 0, "srcFd");
  int out = ArgInt(info, 1, "dstFd");
  if (ioctl(out, FICLONE, in) == 0) return Napi::String::New(env, "reflink");
  struct stat st;
  if (fstat(in, &st) < 0) throw ErrnoError(env, errno, "fstat");
  off_t size = st.st_size;
  bool plain = false;
  int err = 0;
  off_t pos = 0;
  while (pos < size) {
    off_t data = lseek(in, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0) data = pos;               // no SEEK_DATA: all data
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0 || hole > size) hole = size;
    if (!CopyRange(in, out, data, hole, &plain, &err)) throw ErrnoError(env, err, "copy_file_range");
    pos = hole;
  }
  if (ftruncate(out, size) < 0) throw ErrnoError(env, errno, "ftruncate");
  return Napi::String::New(env, "copy");
}

}  // namespace

void InitFsat(Napi::Env env, Napi::Object exports) {
  ExportFunctions(env, exports, {
      {"openat", Openat},       {"fstatat", Fstatat},       {"readdirFd", ReaddirFd},   {"fchownat", Fchownat},
      {"mkdirat", Mkdirat},     {"mknodat", Mknodat},       {"symlinkat", Symlinkat},   {"readlinkat", Readlinkat},
      {"linkat", Linkat},       {"utimensat", Utimensat},   {"listXattrs", ListXattrs}, {"getXattr", GetXattr},
      {"setXattr", SetXattr},   {"copyData", CopyData},
  });
}
