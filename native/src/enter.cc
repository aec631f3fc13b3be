// Entering a running container (machinectl-ts shell/login): a new process inside all of the
// container's namespaces, as the user asked for, with a pty of the container's own when wanted.
// What to join, as whom, with which capabilities and environment is decided in TypeScript
// (src/machinectl/enter.ts); this file performs it.
//
//   parent (Node)  socketpair, clone3 -> A
//   A              joins the container's cgroups (writes "0" to cgroup.procs fds), then setns()
//                  into each namespace fd in the given order (user first); a PID namespace only
//                  applies to children, so A forks B with CLONE_PARENT (B is Node's child, and can
//                  be waited for through a pidfd), reports B's PID and exits.
//   B              chroot()s into the container's root (an fd of /proc/LEADER/root), opens a pty
//                  in the container's devpts and sends its master over the channel, becomes a
//                  session leader with the pty as controlling terminal, sets groups, GID, bounding
//                  set, UID and capabilities, changes directory and exec()s.
//
// As in container.cc the children make raw system calls only (Node is multi-threaded: nothing
// after clone may take a lock or allocate); every argument is plain C memory before clone. The
// channel speaks proc-setup.h's wire format (kind, op, err, value + SCM_RIGHTS), so channelRecv()
// reads it: ERROR(op = step, value = index), PID(value), PTY(fd, value = pty number); end-of-file
// when B exec()ed (the channel is close-on-exec) and A exited.
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "errno.h"
#include "proc-setup.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace {

// Steps, reported as `op` of an ERROR (src/machinectl/enter.ts names them).
enum Step : int32_t {
  STEP_CGROUP = 1,
  STEP_SETNS = 2,
  STEP_FORK = 3,
  STEP_CHROOT = 4,
  STEP_PTY = 5,
  STEP_CTTY = 6,
  STEP_GROUPS = 7,
  STEP_GID = 8,
  STEP_CAPBSET = 9,
  STEP_UID = 10,
  STEP_CAPS = 11,
  STEP_NO_NEW_PRIVS = 12,
  STEP_EXEC = 13,
  STEP_STDIO = 14,
};

struct NsFd {
  int fd;
  int nstype;
};

struct EnterPlan {
  std::vector<NsFd> namespaces;
  std::vector<int> cgroupFds;
  int rootFd = -1;
  bool pty = false;
  const char* ptmx = nullptr;
  uint32_t uid = 0, gid = 0;
  std::vector<gid_t> groups;
  bool dropBounding = false;
  uint64_t boundingKeep = 0;
  bool setCaps = false;
  uint64_t capEff = 0, capPrm = 0, capInh = 0;
  bool noNewPrivs = false;
  const char* cwd = nullptr;
  std::vector<const char*> candidates, argv, envp;
  std::deque<std::string> strings;
};

[[noreturn]] void Fail(int chan, Step step, int err, int index = 0) { FailMsg(chan, step, err, index); }

// Opens a pty in the devpts that `ptmx` belongs to (the container's, after chroot), sends the
// master to the parent, and makes the peer our stdio and controlling terminal, owned by `uid`.
int SetupPty(int chan, const EnterPlan& plan, Step* step) {
  *step = STEP_PTY;
  int master, slave;
  unsigned n;
  int err = OpenPtyPair(plan.ptmx, &master, &slave, &n);
  if (err) return err;
  // the user's own terminal, as login(1) and systemd's chown_terminal() leave it
  if (fchown(slave, plan.uid, static_cast<gid_t>(-1)) < 0 || fchmod(slave, 0620) < 0) return errno;
  if ((err = SendPtyMaster(chan, master, n)) != 0) return err;
  *step = STEP_CTTY;
  if (setsid() < 0) return errno;
  if ((err = DupToStdio(slave)) != 0) return err;
  if (ioctl(0, TIOCSCTTY, 0) < 0) return errno;
  return 0;
}

// B: inside every namespace; becomes the user's process and execs.
[[noreturn]] void Inner(const EnterPlan& plan, int chan) {
  // After setns() into a user namespace our IDs are the host's, unmapped there (the overflow ID):
  // the container's devpts refuses a pty to them. Become the namespace's root first, as systemd's
  // namespace_enter() does (reset_uid_gid()); the user's IDs are set below.
  for (const NsFd& ns : plan.namespaces) {
    if (ns.nstype != CLONE_NEWUSER) continue;
    if (syscall(SYS_setresgid, 0, 0, 0) < 0) Fail(chan, STEP_GID, errno);
    if (syscall(SYS_setresuid, 0, 0, 0) < 0) Fail(chan, STEP_UID, errno);
  }
  if (plan.rootFd >= 0) {
    if (fchdir(plan.rootFd) < 0 || chroot(".") < 0) Fail(chan, STEP_CHROOT, errno);
  }
  if (chdir("/") < 0) Fail(chan, STEP_CHROOT, errno);
  if (plan.pty) {
    Step step;
    int err = SetupPty(chan, plan, &step);
    if (err) Fail(chan, step, err);
  } else {
    // Node marks its stdio close-on-exec; the command needs them
    for (int fd = 0; fd < 3; fd++) {
      if (fcntl(fd, F_SETFD, 0) < 0 && errno != EBADF) Fail(chan, STEP_STDIO, errno, fd);
    }
  }
  if (syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) < 0) Fail(chan, STEP_GROUPS, errno);
  if (syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) < 0) Fail(chan, STEP_GID, errno);
  if (plan.dropBounding) {
    int err = CapBsetDrop(plan.boundingKeep);
    if (err) Fail(chan, STEP_CAPBSET, err);
  }
  if (syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) < 0) Fail(chan, STEP_UID, errno);
  if (plan.setCaps) {
    int err = CapSet(plan.capEff, plan.capPrm, plan.capInh);
    if (err) Fail(chan, STEP_CAPS, err);
  }
  if (plan.noNewPrivs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) Fail(chan, STEP_NO_NEW_PRIVS, errno);
  // like systemd's WorkingDirectory=-~: the home directory if it can be entered, else /
  if (plan.cwd && chdir(plan.cwd) < 0) (void)chdir("/");
  Fail(chan, STEP_EXEC, ExecFirst(plan.candidates.data(), plan.argv.data(), plan.envp.data()));
}

// A: joins cgroups and namespaces, forks B into them.
[[noreturn]] void Outer(const EnterPlan& plan, int chan, int parentEnd) {
  close(parentEnd);
  ResetSignals();
  // whatever Node had open must not reach the command: close-on-exec for every fd past stdio
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
    for (int fd = 3; fd < 4096; fd++) {
      int fl = fcntl(fd, F_GETFD);
      if (fl >= 0) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    }
  }
  for (size_t i = 0; i < plan.cgroupFds.size(); i++) {
    // "0" moves the writer; B, forked later, inherits the cgroups
    if (write(plan.cgroupFds[i], "0", 1) < 0) Fail(chan, STEP_CGROUP, errno, static_cast<int>(i));
  }
  for (size_t i = 0; i < plan.namespaces.size(); i++) {
    if (setns(plan.namespaces[i].fd, plan.namespaces[i].nstype) < 0) Fail(chan, STEP_SETNS, errno, static_cast<int>(i));
  }
  long pid = Clone3(CLONE_PARENT, nullptr);
  if (pid < 0) Fail(chan, STEP_FORK, errno);
  if (pid == 0) Inner(plan, chan);
  SendMsg(chan, MSG_PID, 0, 0, static_cast<int32_t>(pid));
  _exit(0);
}

// ---- parsing (parent, before clone) ----

const char* Str(EnterPlan& plan, const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string("enterSpawn: '") + what + "' must be a string");
  plan.strings.push_back(v.As<Napi::String>().Utf8Value());
  if (plan.strings.back().find('\0') != std::string::npos) {
    throw Napi::TypeError::New(v.Env(), std::string("enterSpawn: '") + what + "' contains a NUL byte");
  }
  return plan.strings.back().c_str();
}

void StrList(EnterPlan& plan, const Napi::Object& o, const char* key, std::vector<const char*>& out) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("enterSpawn: '") + key + "' must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(Str(plan, a.Get(i), key));
  out.push_back(nullptr);
}

uint32_t U32(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("enterSpawn: '") + key + "' must be a number");
  return v.As<Napi::Number>().Uint32Value();
}

uint64_t U64(const Napi::Value& v, const char* key) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
  throw Napi::TypeError::New(v.Env(), std::string("enterSpawn: '") + key + "' must be a bigint");
}

void ParsePlan(const Napi::Object& o, EnterPlan& plan) {
  Napi::Env env = o.Env();
  Napi::Value ns = o.Get("namespaces");
  if (!ns.IsArray()) throw Napi::TypeError::New(env, "enterSpawn: 'namespaces' must be an array of {fd, nstype}");
  Napi::Array nsa = ns.As<Napi::Array>();
  for (uint32_t i = 0; i < nsa.Length(); i++) {
    Napi::Object e = nsa.Get(i).As<Napi::Object>();
    plan.namespaces.push_back({static_cast<int>(U32(e, "fd")), static_cast<int>(U32(e, "nstype"))});
  }
  Napi::Value cg = o.Get("cgroupFds");
  if (cg.IsArray()) {
    Napi::Array a = cg.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) plan.cgroupFds.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  }
  Napi::Value root = o.Get("rootFd");
  if (root.IsNumber()) plan.rootFd = root.As<Napi::Number>().Int32Value();
  plan.pty = o.Get("pty").ToBoolean().Value();
  if (plan.pty) plan.ptmx = Str(plan, o.Get("ptmx"), "ptmx");
  plan.uid = U32(o, "uid");
  plan.gid = U32(o, "gid");
  Napi::Value groups = o.Get("groups");
  if (!groups.IsArray()) throw Napi::TypeError::New(env, "enterSpawn: 'groups' must be an array of numbers");
  Napi::Array ga = groups.As<Napi::Array>();
  for (uint32_t i = 0; i < ga.Length(); i++) plan.groups.push_back(ga.Get(i).As<Napi::Number>().Uint32Value());
  Napi::Value bnd = o.Get("boundingKeep");
  if (!bnd.IsUndefined() && !bnd.IsNull()) {
    plan.dropBounding = true;
    plan.boundingKeep = U64(bnd, "boundingKeep");
  }
  Napi::Value caps = o.Get("caps");
  if (caps.IsObject()) {
    Napi::Object c = caps.As<Napi::Object>();
    plan.setCaps = true;
    plan.capEff = U64(c.Get("effective"), "caps.effective");
    plan.capPrm = U64(c.Get("permitted"), "caps.permitted");
    plan.capInh = U64(c.Get("inheritable"), "caps.inheritable");
  }
  plan.noNewPrivs = o.Get("noNewPrivs").ToBoolean().Value();
  Napi::Value cwd = o.Get("cwd");
  if (cwd.IsString()) plan.cwd = Str(plan, cwd, "cwd");
  StrList(plan, o, "candidates", plan.candidates);
  StrList(plan, o, "argv", plan.argv);
  StrList(plan, o, "envp", plan.envp);
  if (plan.argv.size() < 2) throw Napi::TypeError::New(env, "enterSpawn: 'argv' must not be empty");
}

// enterSpawn(plan) -> {pid, pidfd, channel}: pid/pidfd of A (reap it), our end of the channel.
Napi::Value EnterSpawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "argument 'plan' must be an object");
  EnterPlan plan;
  ParsePlan(info[0].As<Napi::Object>(), plan);

  return SpawnWithChannel(env, 0, [&plan](int chan, int parentEnd) { Outer(plan, chan, parentEnd); });
}

}  // namespace

void InitEnter(Napi::Env env, Napi::Object exports) {
  exports.Set("enterSpawn", Napi::Function::New(env, EnterSpawn));
}
