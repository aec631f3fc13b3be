// Starting a container: clone3() with fork semantics into new namespaces, then an interpreter of
// an operation list that TypeScript built (src/runtime/plan.ts): mount, mkdir, mknod, pivot_root,
// sethostname, setresuid, capability and seccomp set-up, exec. The policy (which mounts, which
// capabilities) is data decided in TypeScript; this file only executes it.
//
// Node is multi-threaded, so after clone() the child may use nothing that takes a lock or
// allocates: every string and array is converted to plain C memory *before* clone, and the child
// makes raw system calls only. Progress and failures travel over a SOCK_SEQPACKET socketpair (the
// "channel"): the child reports READY at each sync point and waits for GO (the parent writes
// uid/gid maps, moves it into cgroups, sets up the network in between), reports ERROR(op, errno)
// when an operation fails, and its end is close-on-exec, so end-of-file means a successful exec.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "errno.h"
#include "proc-setup.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace {

enum OpCode {
  OP_MOUNT,
  OP_SETATTR,
  OP_UMOUNT,
  OP_MKDIR,
  OP_TOUCH,
  OP_MKNOD,
  OP_SYMLINK,
  OP_WRITE_FILE,
  OP_CHOWN,
  OP_CHMOD,
  OP_PIVOT_ROOT,
  OP_MOVE_ROOT,
  OP_SETHOSTNAME,
  OP_CHDIR,
  OP_UNSHARE,
  OP_SETNS,
  OP_SYNC,
  OP_SETGROUPS,
  OP_SETRESGID,
  OP_SETRESUID,
  OP_CAPBSET,
  OP_CAPSET,
  OP_SECCOMP,
  OP_NO_NEW_PRIVS,
  OP_LOOPBACK_UP,
  OP_PTY,
  OP_CTTY,
  OP_SETSID,
  OP_STUB_INIT,
  OP_CLONE_INNER,
  OP_PDEATHSIG,
  OP_EXEC,
  OP_BIND_IDMAPPED,
  OP_JOIN_CGROUP,
};

// What an op reads from its JS object (src/runtime/plan.ts): strings into s1..s4 (key, and
// whether it must be there) and numbers into n1..n4 (key and default, or a boolean as 0/1).
// setgroups, seccomp, exec and mknod's device number read more (ParsePlan).
struct StrField {
  const char* key = nullptr;
  bool required = false;
};
struct NumField {
  const char* key = nullptr;
  uint64_t def = 0;
  bool boolean = false;
};
struct OpSpec {
  const char* name;
  OpCode code;
  StrField s[4];
  NumField n[4];
};

constexpr bool kRequired = true;
constexpr NumField Flag(const char* key) { return {key, 0, true}; }

const OpSpec kOps[] = {
    {"mount", OP_MOUNT, {{"source"}, {"target", kRequired}, {"fstype"}, {"data"}}, {{"flags"}}},
    {"setattr", OP_SETATTR, {{"path", kRequired}}, {{"set"}, {"clear"}, Flag("recursive"), {"propagation"}}},
    {"umount", OP_UMOUNT, {{"path", kRequired}}, {{"flags"}}},
    {"mkdir", OP_MKDIR, {{"path", kRequired}}, {{"mode", 0755}, Flag("parents")}},
    {"touch", OP_TOUCH, {{"path", kRequired}}, {{"mode", 0755}, Flag("parents")}},
    {"chmod", OP_CHMOD, {{"path", kRequired}}, {{"mode", 0755}, Flag("parents")}},
    {"mknod", OP_MKNOD, {{"path", kRequired}}, {{"mode"}}},
    {"symlink", OP_SYMLINK, {{"target", kRequired}, {"path", kRequired}}, {}},
    {"writeFile", OP_WRITE_FILE, {{"path", kRequired}, {"content", kRequired}}, {{"mode", 0644}}},
    {"chown", OP_CHOWN, {{"path", kRequired}}, {{"uid"}, {"gid"}}},
    {"pivotRoot", OP_PIVOT_ROOT, {{"path", kRequired}}, {}},
    {"moveRoot", OP_MOVE_ROOT, {{"path", kRequired}}, {}},
    {"sethostname", OP_SETHOSTNAME, {{"name", kRequired}}, {}},
    {"chdir", OP_CHDIR, {{"path", kRequired}}, {}},
    {"unshare", OP_UNSHARE, {}, {{"flags"}}},
    {"setns", OP_SETNS, {{"path", kRequired}}, {{"nstype"}}},
    {"sync", OP_SYNC, {}, {}},
    {"setgroups", OP_SETGROUPS, {}, {}},
    {"setresgid", OP_SETRESGID, {}, {{"gid"}}},
    {"setresuid", OP_SETRESUID, {}, {{"uid"}}},
    {"capbset", OP_CAPBSET, {}, {{"keep"}}},
    {"capset", OP_CAPSET, {}, {{"effective"}, {"permitted"}, {"inheritable"}, {"ambient"}}},
    {"seccomp", OP_SECCOMP, {}, {}},
    {"noNewPrivs", OP_NO_NEW_PRIVS, {}, {}},
    {"loopbackUp", OP_LOOPBACK_UP, {}, {}},
    {"pty", OP_PTY, {{"ptmx", kRequired}, {"consoleLink"}}, {}},
    {"ctty", OP_CTTY, {}, {}},
    {"setsid", OP_SETSID, {}, {}},
    {"stubInit", OP_STUB_INIT, {}, {}},
    {"cloneInner", OP_CLONE_INNER, {}, {{"flags"}}},
    {"pdeathsig", OP_PDEATHSIG, {}, {{"signal", SIGKILL}}},
    {"exec", OP_EXEC, {}, {}},
    {"bindIdmapped", OP_BIND_IDMAPPED, {{"source", kRequired}, {"target", kRequired}, {"userns", kRequired}}, {Flag("recursive")}},
    {"joinCgroup", OP_JOIN_CGROUP, {{"tasks", kRequired}}, {}},
};

// One operation, with every argument already in plain memory (pointers into Plan's storage).
struct Op {
  OpCode code;
  bool optional;  // ENOENT/ENODEV/ENOTDIR are not failures (a /proc file this kernel lacks)
  const char* s1 = nullptr;
  const char* s2 = nullptr;
  const char* s3 = nullptr;
  const char* s4 = nullptr;
  uint64_t n1 = 0, n2 = 0, n3 = 0, n4 = 0;
  const char* const* list1 = nullptr;  // exec: candidate paths
  const char* const* list2 = nullptr;  // exec: argv
  const char* const* list3 = nullptr;  // exec: envp
  const uint32_t* nums = nullptr;      // setgroups
  size_t numsLen = 0;
  const uint8_t* bytes = nullptr;      // seccomp program (struct sock_filter[])
  size_t bytesLen = 0;
};

// Owns the memory the child reads. Built by the parent before clone; never changed after.
struct Plan {
  uint64_t cloneFlags = 0;
  std::string cgroupDir;  // cgroup2 directory the child starts in (CLONE_INTO_CGROUP), or empty
  std::vector<Op> ops;
  std::deque<std::string> strings;
  std::deque<std::vector<const char*>> lists;
  std::deque<std::vector<uint32_t>> numLists;
  std::deque<std::vector<uint8_t>> byteLists;
};

// ---- parsing the JS plan (parent, before clone) ----

const char* GetString(Plan& plan, const Napi::Object& o, const char* key, bool required, size_t index) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) {
      throw Napi::TypeError::New(o.Env(), "plan op " + std::to_string(index) + ": '" + key + "' is required");
    }
    return nullptr;
  }
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), "plan op " + std::to_string(index) + ": '" + key + "' must be a string");
  plan.strings.push_back(v.As<Napi::String>().Utf8Value());
  if (plan.strings.back().find('\0') != std::string::npos) {
    throw Napi::TypeError::New(o.Env(), "plan op " + std::to_string(index) + ": '" + key + "' contains a NUL byte");
  }
  return plan.strings.back().c_str();
}

uint64_t GetNumber(const Napi::Object& o, const char* key, uint64_t def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("plan: '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0) return static_cast<uint64_t>(static_cast<int64_t>(d));
  return static_cast<uint64_t>(d);
}

const char* const* GetStringList(Plan& plan, const Napi::Object& o, const char* key, size_t index) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), "plan op " + std::to_string(index) + ": '" + key + "' must be an array");
  Napi::Array a = v.As<Napi::Array>();
  plan.lists.emplace_back();
  auto& list = plan.lists.back();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) throw Napi::TypeError::New(o.Env(), "plan op " + std::to_string(index) + ": '" + key + "' must hold strings");
    plan.strings.push_back(e.As<Napi::String>().Utf8Value());
    list.push_back(plan.strings.back().c_str());
  }
  list.push_back(nullptr);
  return list.data();
}

void ParsePlan(const Napi::Object& obj, Plan& plan) {
  Napi::Env env = obj.Env();
  plan.cloneFlags = GetNumber(obj, "cloneFlags", 0);
  Napi::Value cg = obj.Get("cgroupDir");
  if (!cg.IsUndefined() && !cg.IsNull()) {
    if (!cg.IsString()) throw Napi::TypeError::New(env, "plan: 'cgroupDir' must be a string");
    plan.cgroupDir = cg.As<Napi::String>().Utf8Value();
  }
  Napi::Value opsV = obj.Get("ops");
  if (!opsV.IsArray()) throw Napi::TypeError::New(env, "plan: 'ops' must be an array");
  Napi::Array ops = opsV.As<Napi::Array>();
  for (uint32_t i = 0; i < ops.Length(); i++) {
    Napi::Value ov = ops.Get(i);
    if (!ov.IsObject()) throw Napi::TypeError::New(env, "plan op " + std::to_string(i) + " must be an object");
    Napi::Object o = ov.As<Napi::Object>();
    Napi::Value nameV = o.Get("op");
    if (!nameV.IsString()) throw Napi::TypeError::New(env, "plan op " + std::to_string(i) + ": 'op' must be a string");
    std::string name = nameV.As<Napi::String>().Utf8Value();
    const OpSpec* spec = nullptr;
    for (const auto& k : kOps) {
      if (name == k.name) {
        spec = &k;
        break;
      }
    }
    if (!spec) throw Napi::TypeError::New(env, "plan op " + std::to_string(i) + ": unknown op '" + name + "'");
    Op op{};
    op.code = spec->code;
    op.optional = o.Get("optional").ToBoolean().Value();
    const char** strs[4] = {&op.s1, &op.s2, &op.s3, &op.s4};
    for (int k = 0; k < 4; k++) {
      if (spec->s[k].key) *strs[k] = GetString(plan, o, spec->s[k].key, spec->s[k].required, i);
    }
    uint64_t* nums[4] = {&op.n1, &op.n2, &op.n3, &op.n4};
    for (int k = 0; k < 4; k++) {
      const NumField& f = spec->n[k];
      if (!f.key) continue;
      *nums[k] = f.boolean ? (o.Get(f.key).ToBoolean().Value() ? 1 : 0) : GetNumber(o, f.key, f.def);
    }
    switch (op.code) {
      case OP_MKNOD:
        op.n2 = makedev(GetNumber(o, "major", 0), GetNumber(o, "minor", 0));
        break;
      case OP_SETGROUPS: {
        Napi::Value g = o.Get("gids");
        if (!g.IsArray()) throw Napi::TypeError::New(env, "plan op " + std::to_string(i) + ": 'gids' must be an array");
        Napi::Array a = g.As<Napi::Array>();
        plan.numLists.emplace_back();
        for (uint32_t k = 0; k < a.Length(); k++) plan.numLists.back().push_back(a.Get(k).As<Napi::Number>().Uint32Value());
        op.nums = plan.numLists.back().data();
        op.numsLen = plan.numLists.back().size();
        break;
      }
      case OP_SECCOMP: {
        Napi::Value b = o.Get("program");
        if (!b.IsTypedArray()) throw Napi::TypeError::New(env, "plan op " + std::to_string(i) + ": 'program' must be a Uint8Array");
        Napi::Uint8Array u = b.As<Napi::Uint8Array>();
        plan.byteLists.emplace_back(u.Data(), u.Data() + u.ByteLength());
        op.bytes = plan.byteLists.back().data();
        op.bytesLen = plan.byteLists.back().size();
        if (op.bytesLen % sizeof(sock_filter) != 0) throw Napi::TypeError::New(env, "seccomp program length is not a multiple of 8");
        break;
      }
      case OP_EXEC:
        op.list1 = GetStringList(plan, o, "candidates", i);
        op.list2 = GetStringList(plan, o, "argv", i);
        op.list3 = GetStringList(plan, o, "envp", i);
        if (!op.list1 || !op.list2 || !op.list3) throw Napi::TypeError::New(env, "plan op " + std::to_string(i) + ": exec needs candidates, argv and envp");
        break;
      default:
        break;  // kOps says it all
    }
    plan.ops.push_back(op);
  }
}

// ---- the child: raw system calls only ----

constexpr int kChannelFd = 3;

[[noreturn]] void Fail(int chan, size_t index, int err) { FailMsg(chan, static_cast<int32_t>(index), err, 0); }

// The container's PID 1 with --as-pid2: reaps every zombie, forwards every signal to the payload
// and exits with its status (128+N when a signal ended it). All signals stay blocked and are taken
// with sigwaitinfo(), which also receives signals that init would otherwise ignore.
// Field `n` (1-based, as proc(5) numbers them) of /proc/self/stat; 0 when it cannot be read.
unsigned long SelfStatField(int n) {
  char buf[2048];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t len = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (len <= 0) return 0;
  buf[len] = '\0';
  char* p = strrchr(buf, ')');  // the command name may hold spaces and parentheses
  if (!p) return 0;
  int field = 2;
  for (; *p && field < n; p++) {
    if (*p == ' ') field++;
  }
  unsigned long v = 0;
  for (; *p >= '0' && *p <= '9'; p++) v = v * 10 + static_cast<unsigned long>(*p - '0');
  return v;
}

// Blanks a memory range of our own (this process is a copy of Node's; Node's memory is untouched).
void Blank(unsigned long start, unsigned long end) {
  if (start == 0 || end <= start) return;
  memset(reinterpret_cast<void*>(start), 0, end - start);
}

// What the container sees of its PID 1: "(sd-stubinit)", as systemd-nspawn's stub is named (its
// rename_process()), not the launcher's command line and environment, which are host paths.
// argv and environ are this process's copy of Node's; they are overwritten in place.
void RenameStub() {
  static const char kName[] = "(sd-stubinit)";
  prctl(PR_SET_NAME, kName, 0, 0, 0);
  unsigned long argStart = SelfStatField(48), argEnd = SelfStatField(49);
  unsigned long envStart = SelfStatField(50), envEnd = SelfStatField(51);
  Blank(envStart, envEnd);
  if (argStart == 0 || argEnd <= argStart) return;
  Blank(argStart, argEnd);
  size_t n = sizeof kName;  // with its NUL
  if (n > argEnd - argStart) n = argEnd - argStart;
  memcpy(reinterpret_cast<void*>(argStart), kName, n - 1);
}

[[noreturn]] void StubInit(pid_t payload) {
  RenameStub();
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      for (;;) {
        int status = 0;
        pid_t p = waitpid(-1, &status, WNOHANG);
        if (p <= 0) break;
        if (p == payload) {
          if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
          _exit(128 + WTERMSIG(status));
        }
      }
      continue;
    }
    kill(payload, sig);
  }
}

// mkdir -p of every parent of `path` (mode 0755); a fixed buffer, no allocation after clone.
int MkdirParents(const char* path, mode_t) {
  char buf[4096];
  size_t len = strlen(path);
  if (len >= sizeof buf) return ENAMETOOLONG;
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i < len; i++) {
    if (buf[i] != '/') continue;
    buf[i] = '\0';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST) return errno;
    buf[i] = '/';
  }
  return 0;
}

bool IgnorableForOptional(int err) { return err == ENOENT || err == ENODEV || err == ENOTDIR; }

// Decimal digits of n into buf (no snprintf after clone); returns the end.
char* PutUint(char* buf, unsigned n) {
  char tmp[12];
  int len = 0;
  do {
    tmp[len++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n);
  while (len) *buf++ = tmp[--len];
  *buf = '\0';
  return buf;
}

int OpenPty(int chan, const Op& op) {
  int master, slave;
  unsigned ptyNumber;
  int err = OpenPtyPair(op.s1, &master, &slave, &ptyNumber);
  // hand the master to the parent
  if (!err) err = SendPtyMaster(chan, master, ptyNumber);
  if (!err) err = DupToStdio(slave);
  if (err) return err;
  if (op.s2) {
    char target[32] = "pts/";
    PutUint(target + 4, ptyNumber);
    if (symlink(target, op.s2) < 0 && errno != EEXIST) return errno;
  }
  return 0;
}

// A bind mount of `source` on `target` whose IDs are mapped through the user namespace at
// `userns` (mount_setattr(MOUNT_ATTR_IDMAP) on a detached copy, then moved into place).
int BindIdmapped(const char* source, const char* target, const char* userns, bool recursive) {
  int ns = open(userns, O_RDONLY | O_CLOEXEC);
  if (ns < 0) return errno;
  int tree = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0)));
  if (tree < 0) {
    int err = errno;
    close(ns);
    return err;
  }
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(ns);
  int err = 0;
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) < 0 ||
      syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    err = errno;
  }
  close(tree);
  close(ns);
  return err;
}

int LoopbackUp() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  int err = 0;
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
    err = errno;
  } else {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) err = errno;
  }
  close(fd);
  return err;
}

// Runs ops[start..] in the child; never returns.
[[noreturn]] void RunOps(const Plan& plan, size_t start, int chan) {
  for (size_t i = start; i < plan.ops.size(); i++) {
    const Op& op = plan.ops[i];
    int err = 0;
    switch (op.code) {
      case OP_MOUNT:
        if (mount(op.s1, op.s2, op.s3, op.n1, op.s4) < 0) err = errno;
        break;
      case OP_SETATTR: {
        struct mount_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.attr_set = op.n1;
        attr.attr_clr = op.n2;
        attr.propagation = op.n4;
        if (syscall(SYS_mount_setattr, AT_FDCWD, op.s1, op.n3 ? AT_RECURSIVE : 0, &attr, sizeof attr) < 0) err = errno;
        break;
      }
      case OP_UMOUNT:
        if (umount2(op.s1, static_cast<int>(op.n1)) < 0) err = errno;
        break;
      case OP_MKDIR:
        err = op.n2 ? MkdirParents(op.s1, static_cast<mode_t>(op.n1)) : 0;
        if (!err && mkdir(op.s1, static_cast<mode_t>(op.n1)) < 0 && errno != EEXIST) err = errno;
        break;
      case OP_TOUCH: {
        if (op.n2 && (err = MkdirParents(op.s1, 0755)) != 0) break;
        int fd = open(op.s1, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, static_cast<mode_t>(op.n1));
        if (fd < 0) {
          if (errno != EISDIR) err = errno;  // a directory is a fine mount point too
        } else {
          close(fd);
        }
        break;
      }
      case OP_MKNOD:
        if (mknod(op.s1, static_cast<mode_t>(op.n1), static_cast<dev_t>(op.n2)) < 0) err = errno;
        break;
      case OP_SYMLINK:
        if (symlink(op.s1, op.s2) < 0 && errno != EEXIST) err = errno;
        break;
      case OP_WRITE_FILE: {
        int fd = open(op.s1, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, static_cast<mode_t>(op.n1));
        if (fd < 0) {
          err = errno;
          break;
        }
        size_t len = strlen(op.s2), off = 0;
        while (off < len) {
          ssize_t n = write(fd, op.s2 + off, len - off);
          if (n < 0) {
            if (errno == EINTR) continue;
            err = errno;
            break;
          }
          off += static_cast<size_t>(n);
        }
        if (!err && fchmod(fd, static_cast<mode_t>(op.n1)) < 0) err = errno;
        close(fd);
        break;
      }
      case OP_CHOWN:
        if (lchown(op.s1, static_cast<uid_t>(op.n1), static_cast<gid_t>(op.n2)) < 0) err = errno;
        break;
      case OP_CHMOD:
        if (chmod(op.s1, static_cast<mode_t>(op.n1)) < 0) err = errno;
        break;
      case OP_PIVOT_ROOT:
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
        // only the new root (no directory for the old root is needed inside the container).
        if (chdir(op.s1) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 || chdir("/") < 0) {
          err = errno;
        }
        break;
      case OP_MOVE_ROOT:
        // the root mount goes over "/" and becomes our root; what was "/" stays below it, so
        // the user namespace's procfs and sysfs mounts still find fully visible instances
        if (chdir(op.s1) < 0 || mount(op.s1, "/", nullptr, MS_MOVE, nullptr) < 0 || chroot(".") < 0 || chdir("/") < 0) {
          err = errno;
        }
        break;
      case OP_SETHOSTNAME:
        if (sethostname(op.s1, strlen(op.s1)) < 0) err = errno;
        break;
      case OP_CHDIR:
        if (chdir(op.s1) < 0) err = errno;
        break;
      case OP_UNSHARE:
        if (unshare(static_cast<int>(op.n1)) < 0) err = errno;
        break;
      case OP_SETNS: {
        int fd = open(op.s1, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          err = errno;
          break;
        }
        if (setns(fd, static_cast<int>(op.n1)) < 0) err = errno;
        close(fd);
        break;
      }
      case OP_SYNC: {
        SendMsg(chan, MSG_READY, static_cast<int32_t>(i), 0, 0);
        Msg m;
        ssize_t n = RetryEintr([&] { return recv(chan, &m, sizeof m, 0); });
        if (n != sizeof m || m.kind != MSG_GO) _exit(1);  // the launcher is gone or gave up
        break;
      }
      case OP_SETGROUPS:
        if (syscall(SYS_setgroups, op.numsLen, op.nums) < 0) err = errno;
        break;
      case OP_SETRESGID:
        if (syscall(SYS_setresgid, op.n1, op.n1, op.n1) < 0) err = errno;
        break;
      case OP_SETRESUID:
        if (syscall(SYS_setresuid, op.n1, op.n1, op.n1) < 0) err = errno;
        break;
      case OP_CAPBSET:
        err = CapBsetDrop(op.n1);
        break;
      case OP_CAPSET:
        err = CapSet(op.n1, op.n2, op.n3);
        if (!err) err = CapAmbientSet(op.n4);
        break;
      case OP_SECCOMP: {
        struct sock_fprog prog;
        prog.len = static_cast<unsigned short>(op.bytesLen / sizeof(sock_filter));
        prog.filter = reinterpret_cast<sock_filter*>(const_cast<uint8_t*>(op.bytes));
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) err = errno;
        break;
      }
      case OP_NO_NEW_PRIVS:
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) err = errno;
        break;
      case OP_LOOPBACK_UP:
        err = LoopbackUp();
        break;
      case OP_PTY:
        err = OpenPty(chan, op);
        break;
      case OP_CTTY:
        if (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) < 0) err = errno;
        break;
      case OP_SETSID:
        if (setsid() < 0 && errno != EPERM) err = errno;
        break;
      case OP_STUB_INIT: {
        long pid = Clone3(0, nullptr);
        if (pid < 0) {
          err = errno;
          break;
        }
        if (pid == 0) break;  // the payload continues with the next op
        close(chan);  // end-of-file on the channel must come from the payload's exec
        StubInit(static_cast<pid_t>(pid));
      }
      case OP_CLONE_INNER: {
        // The inner child becomes the launcher's child (CLONE_PARENT) so that the launcher can
        // wait for it; this outer child only reports its pid and exits.
        long pid = Clone3(op.n1 | CLONE_PARENT, nullptr);
        if (pid < 0) {
          err = errno;
          break;
        }
        if (pid == 0) {
          prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
          break;
        }
        SendMsg(chan, MSG_PID, static_cast<int32_t>(i), 0, static_cast<int32_t>(pid));
        _exit(0);
      }
      case OP_PDEATHSIG:
        if (prctl(PR_SET_PDEATHSIG, op.n1, 0, 0, 0) < 0) err = errno;
        break;
      case OP_EXEC:
        err = ExecFirst(op.list1, op.list2, op.list3);
        break;
      case OP_BIND_IDMAPPED:
        err = BindIdmapped(op.s1, op.s2, op.s3, op.n1 != 0);
        break;
      case OP_JOIN_CGROUP: {
        // "0" into a cgroup v1 `tasks` file moves the writing thread only, and the kernel takes no
        // cgroup_threadgroup_rwsem for it (cgroup_procs_write_start): no RCU grace period, unlike
        // a move of a whole process by its pid. This process has one thread: it moves whole.
        int fd = open(op.s1, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
          err = errno;
          break;
        }
        if (RetryEintr([&] { return write(fd, "0", 1); }) < 0) err = errno;
        close(fd);
        break;
      }
    }
    if (err && !(op.optional && IgnorableForOptional(err))) Fail(chan, i, err);
  }
  _exit(0);
}

[[noreturn]] void ChildMain(const Plan& plan, int chan, int parentEnd) {
  close(parentEnd);
  ResetSignals();
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // The channel goes to a fixed fd; everything else Node had open is closed, so a stub init that
  // never execs holds none of the launcher's sockets or namespace fds.
  if (chan != kChannelFd) {
    if (dup3(chan, kChannelFd, O_CLOEXEC) < 0) _exit(1);
    close(chan);
  }
  // Node marks its stdio close-on-exec (uv_disable_stdio_inheritance); the payload needs them.
  for (int fd = 0; fd < 3; fd++) fcntl(fd, F_SETFD, 0);
  if (syscall(SYS_close_range, kChannelFd + 1, ~0U, 0) < 0) {
    for (int fd = kChannelFd + 1; fd < 1024; fd++) close(fd);
  }
  RunOps(plan, 0, kChannelFd);
}

// ---- N-API surface ----

// spawnContainer({cloneFlags, ops, cgroupDir?}) -> {pid, pidfd, channel}. With cgroupDir (a cgroup2
// directory) the child is created in that cgroup: a move of a process into a cgroup waits for an
// RCU grace period on a quiet host (cgroup_threadgroup_rwsem), a clone into one does not.
Napi::Value SpawnContainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "argument 'plan' must be an object");
  Plan plan;
  ParsePlan(info[0].As<Napi::Object>(), plan);
  int cgroupFd = -1;
  if (!plan.cgroupDir.empty()) {
    cgroupFd = open(plan.cgroupDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroupFd < 0) throw ErrnoError(env, errno, "open", "(" + plan.cgroupDir + ")");
  }
  try {
    Napi::Object out = SpawnWithChannel(
        env, plan.cloneFlags, [&plan](int chan, int parentEnd) { ChildMain(plan, chan, parentEnd); }, cgroupFd);
    if (cgroupFd >= 0) close(cgroupFd);
    return out;
  } catch (...) {
    if (cgroupFd >= 0) close(cgroupFd);
    throw;
  }
}

// Writes `text` to /proc/PID/FILE; 0 or errno.
int WriteProcFile(long pid, const char* file, const std::string& text) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = 0;
  if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) err = errno ? errno : EIO;
  close(fd);
  return err;
}

// usernsHolder(uidMap, gidMap) -> {pid, pidfd}: a process that only sits in a new user namespace
// with these maps (/proc/PID/uid_map syntax), so that /proc/PID/ns/user can be used for ID-mapped
// mounts. The caller kills it (SIGKILL) when done; it dies with the launcher too.
Napi::Value UsernsHolder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "arguments 'uidMap' and 'gidMap' must be strings");
  std::string uidMap = info[0].As<Napi::String>().Utf8Value();
  std::string gidMap = info[1].As<Napi::String>().Utf8Value();
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  long pid = Clone3(CLONE_NEWUSER, &pidfd);
  if (pid == 0) {
    // every signal stays blocked: only SIGKILL (ours, or the launcher's death) ends it
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    syscall(SYS_close_range, 3, ~0U, 0);
    for (;;) pause();
  }
  int cloneErr = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) throw ErrnoError(env, cloneErr, "clone3", "(user namespace)");
  int err = WriteProcFile(pid, "uid_map", uidMap);
  const char* which = "uid_map";
  if (!err) {
    err = WriteProcFile(pid, "gid_map", gidMap);
    which = "gid_map";
  }
  if (err) {
    kill(static_cast<pid_t>(pid), SIGKILL);
    siginfo_t si;
    RetryEintr([&] { return waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED); });
    close(pidfd);
    throw ErrnoError(env, err, "write", std::string("(/proc/PID/") + which + ")");
  }
  fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, static_cast<double>(pid)));
  out.Set("pidfd", Napi::Number::New(env, pidfd));
  return out;
}

// idmapSupported(path, userns) -> whether a bind of `path` can be ID-mapped through the user
// namespace at `userns` (tried on a detached copy that is dropped again: nothing is mounted).
// false for the file system's refusal (EINVAL, EOPNOTSUPP); other failures throw.
Napi::Value IdmapSupported(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "arguments 'path' and 'userns' must be strings");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string userns = info[1].As<Napi::String>().Utf8Value();
  int ns = open(userns.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) throw ErrnoError(env, errno, "open", userns);
  int tree = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (tree < 0) {
    int err = errno;
    close(ns);
    throw ErrnoError(env, err, "open_tree", path);
  }
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(ns);
  int rc = static_cast<int>(syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr));
  int err = errno;
  close(tree);
  close(ns);
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (err == EINVAL || err == EOPNOTSUPP || err == ENOSYS) return Napi::Boolean::New(env, false);
  throw ErrnoError(env, err, "mount_setattr", path);
}

// channelRecv(fd) -> {kind, op, err, value, fd?} | {kind: 0} at end-of-file | null when empty
Napi::Value ChannelRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  Msg m;
  memset(&m, 0, sizeof m);
  struct iovec iov;
  char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  struct msghdr mh;
  InitMsgHdr(&mh, &iov, &m, sizeof m, cbuf, sizeof cbuf);
  ssize_t n = RetryEintr([&] { return recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); });
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    if (errno == ECONNRESET) n = 0;
    else throw ErrnoError(env, errno, "recvmsg", "(container channel)");
  }
  Napi::Object out = Napi::Object::New(env);
  if (n == 0) {
    out.Set("kind", Napi::Number::New(env, 0));
    return out;
  }
  out.Set("kind", Napi::Number::New(env, m.kind));
  out.Set("op", Napi::Number::New(env, m.op));
  out.Set("err", Napi::Number::New(env, m.err));
  out.Set("value", Napi::Number::New(env, m.value));
  if (m.err) {
    out.Set("code", Napi::String::New(env, ErrnoName(m.err)));
    out.Set("message", Napi::String::New(env, strerror(m.err)));
  }
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int passed;
      memcpy(&passed, CMSG_DATA(c), sizeof passed);
      out.Set("fd", Napi::Number::New(env, passed));
    }
  }
  return out;
}

// channelGo(fd): lets the child continue past its sync point.
Napi::Value ChannelGo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  Msg m{MSG_GO, 0, 0, 0};
  if (RetryEintr([&] { return send(fd, &m, sizeof m, MSG_NOSIGNAL); }) < 0) throw ErrnoError(env, errno, "send", "(container channel)");
  return env.Undefined();
}

Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pid = ArgInt(info, 0, "pid");
  long fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) throw ErrnoError(env, errno, "pidfd_open", "(pid " + std::to_string(pid) + ")");
  fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  return Napi::Number::New(env, static_cast<double>(fd));
}

Napi::Value PidfdSendSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "pidfd");
  int sig = ArgInt(info, 1, "signal");
  if (syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0) < 0) {
    throw ErrnoError(env, errno, "pidfd_send_signal", "(signal " + std::to_string(sig) + ")");
  }
  return env.Undefined();
}

// waitPidfd(pidfd) -> null while running, else {code, signal} (one of them null). Reaps it.
Napi::Value WaitPidfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "pidfd");
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (RetryEintr([&] { return waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &si, WEXITED | WNOHANG); }) < 0) throw ErrnoError(env, errno, "waitid");
  if (si.si_pid == 0) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  if (si.si_code == CLD_EXITED) {
    out.Set("code", Napi::Number::New(env, si.si_status));
    out.Set("signal", env.Null());
  } else {
    out.Set("code", env.Null());
    out.Set("signal", Napi::Number::New(env, si.si_status));
  }
  return out;
}

Napi::Uint8Array ArgBuf(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "argument 'buf' must be a Uint8Array");
  return info[i].As<Napi::Uint8Array>();
}

// readFd/writeFd(fd, buf) -> bytes moved, -1 when it would block, -2 when a read gets EIO (a pty
// whose every slave is closed: not the end, the container may open its console again).
Napi::Value ReadOrWrite(const Napi::CallbackInfo& info, bool writing) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto buf = ArgBuf(info, 1);
  ssize_t n = RetryEintr([&] { return writing ? write(fd, buf.Data(), buf.ByteLength()) : read(fd, buf.Data(), buf.ByteLength()); });
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    if (errno == EIO && !writing) return Napi::Number::New(env, -2);
    throw ErrnoError(env, errno, writing ? "write" : "read");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value ReadFd(const Napi::CallbackInfo& info) { return ReadOrWrite(info, false); }
Napi::Value WriteFd(const Napi::CallbackInfo& info) { return ReadOrWrite(info, true); }

Napi::Value SetNonblocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) throw ErrnoError(env, errno, "fcntl");
  return env.Undefined();
}

// ptyPeer(master) -> fd of the pty's slave (TIOCGPTPEER, O_NOCTTY, non-blocking): the console
// forwarder holds one open so that the container closing its console does not hang the pty up.
Napi::Value PtyPeer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int peer = ioctl(fd, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (peer < 0) throw ErrnoError(env, errno, "ioctl", "(TIOCGPTPEER)");
  return Napi::Number::New(env, peer);
}

// setWindowSize(fd, rows, cols): TIOCSWINSZ on a terminal (the pty master).
Napi::Value SetWindowSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_row = static_cast<unsigned short>(ArgInt(info, 1, "rows"));
  ws.ws_col = static_cast<unsigned short>(ArgInt(info, 2, "cols"));
  if (ioctl(fd, TIOCSWINSZ, &ws) < 0) throw ErrnoError(env, errno, "ioctl", "(TIOCSWINSZ)");
  return env.Undefined();
}

// flock(fd, operation) -> true, or false when LOCK_NB was given and the lock is held elsewhere.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int op = ArgInt(info, 1, "operation");
  if (RetryEintr([&] { return flock(fd, op); }) < 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    throw ErrnoError(env, errno, "flock");
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitContainer(Napi::Env env, Napi::Object exports) {
  ExportFunctions(env, exports, {
      {"spawnContainer", SpawnContainer}, {"channelRecv", ChannelRecv},         {"channelGo", ChannelGo},
      {"pidfdOpen", PidfdOpen},           {"pidfdSendSignal", PidfdSendSignal}, {"waitPidfd", WaitPidfd},
      {"readFd", ReadFd},                 {"writeFd", WriteFd},                 {"setNonblocking", SetNonblocking},
      {"setWindowSize", SetWindowSize},   {"flock", Flock},                     {"usernsHolder", UsernsHolder},
      {"ptyPeer", PtyPeer},               {"idmapSupported", IdmapSupported},
  });
}
