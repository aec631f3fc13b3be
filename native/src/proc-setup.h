// What starting a container (container.cc) and entering one (enter.cc) both do: clone a child
// with a channel back to Node, and in that child reset signals, open a pty and hand its master
// over, set capabilities and exec. The child-side functions make raw system calls only and
// neither allocate nor take locks (Node is multi-threaded; they run after clone).
#pragma once
#include <fcntl.h>
#include <napi.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "errno.h"

// Messages on the channel (both directions): fixed size, host byte order. channelRecv() in
// container.cc reads them for both callers.
enum MsgKind : int32_t {
  MSG_READY = 1,  // child reached sync op `op`; waits for MSG_GO
  MSG_ERROR = 2,  // op/step `op` failed with errno `err`; the child exits
  MSG_PID = 3,    // a grandchild (made with CLONE_PARENT) has host pid `value`
  MSG_PTY = 4,    // the pty master travels as SCM_RIGHTS; `value` is the pty number
  MSG_GO = 5,     // parent -> child: continue
};

struct Msg {
  int32_t kind;
  int32_t op;
  int32_t err;
  int32_t value;
};

void SendMsg(int chan, int32_t kind, int32_t op, int32_t err, int32_t value);

// Points `mh` (zeroed) at one message buffer and at `cbuf` (zeroed) for control messages.
void InitMsgHdr(struct msghdr* mh, struct iovec* iov, void* buf, size_t len, char* cbuf, size_t cbufLen);

// Reports ERROR(op, err, value) and exits: 127 when the error is ENOENT (as a shell's "not found"), else 1.
[[noreturn]] void FailMsg(int chan, int32_t op, int err, int32_t value);

// clone3() with fork semantics; with `pidfd` a pidfd of the child is stored there. A child made
// with CLONE_PARENT sends no exit signal (it becomes our parent's child). With `cgroupFd` (a
// cgroup2 directory) the child starts in that cgroup (CLONE_INTO_CGROUP): no move afterwards.
long Clone3(uint64_t flags, int* pidfd, int cgroupFd = -1);

// Every signal handler back to SIG_DFL (Node's handlers must not run in the child).
void ResetSignals();

// Opens a new pty from `ptmx` (unlocked): its master, its peer (the slave) and its number.
int OpenPtyPair(const char* ptmx, int* master, int* slave, unsigned* number);

// Sends MSG_PTY(value = number) with the master as SCM_RIGHTS, then closes the master.
int SendPtyMaster(int chan, int master, unsigned number);

// Makes `fd` stdin, stdout and stderr, and closes it (unless it is one of them).
int DupToStdio(int fd);

// Drops every capability not in `keep` from the bounding set.
int CapBsetDrop(uint64_t keep);

// capset(): effective, permitted and inheritable sets.
int CapSet(uint64_t eff, uint64_t perm, uint64_t inh);

// Clears the ambient set, then raises the capabilities in `amb`.
int CapAmbientSet(uint64_t amb);

// execve() of the first candidate path that exists (argv and envp as given), with no signal
// blocked. Returns only on failure: EACCES when a candidate was not executable and none ran,
// ENOENT when none exists, or the errno of a candidate that exists but could not run.
int ExecFirst(const char* const* candidates, const char* const* argv, const char* const* envp);

// The parent side: a SOCK_SEQPACKET socketpair, clone3(`cloneFlags`, into `cgroupFd` when >= 0)
// with a pidfd and every signal blocked across it, `child(childEnd, parentEnd)` in the child (it
// must not return). Returns {pid, pidfd, channel}, the channel our non-blocking end; throws on failure.
template <typename Child>
Napi::Object SpawnWithChannel(Napi::Env env, uint64_t cloneFlags, Child child, int cgroupFd = -1) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) throw ErrnoError(env, errno, "socketpair");
  // Signals stay blocked across clone so that none runs Node's handlers in the child (they would
  // write into the launcher's own signal pipe); the child resets every handler first.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  long pid = Clone3(cloneFlags, &pidfd, cgroupFd);
  if (pid == 0) child(sv[1], sv[0]);
  int cloneErr = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    throw ErrnoError(env, cloneErr, "clone3");
  }
  int fl = fcntl(sv[0], F_GETFL);
  fcntl(sv[0], F_SETFL, fl | O_NONBLOCK);
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, static_cast<double>(pid)));
  out.Set("pidfd", Napi::Number::New(env, pidfd));
  out.Set("channel", Napi::Number::New(env, sv[0]));
  return out;
}
