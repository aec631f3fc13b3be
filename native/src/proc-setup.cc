#include "proc-setup.h"

#include <linux/capability.h>
#include <linux/sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <termios.h>

#include <cstring>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

void SendMsg(int chan, int32_t kind, int32_t op, int32_t err, int32_t value) {
  Msg m{kind, op, err, value};
  RetryEintr([&] { return send(chan, &m, sizeof m, MSG_NOSIGNAL); });
}

void InitMsgHdr(struct msghdr* mh, struct iovec* iov, void* buf, size_t len, char* cbuf, size_t cbufLen) {
  iov->iov_base = buf;
  iov->iov_len = len;
  memset(cbuf, 0, cbufLen);
  memset(mh, 0, sizeof *mh);
  mh->msg_iov = iov;
  mh->msg_iovlen = 1;
  mh->msg_control = cbuf;
  mh->msg_controllen = cbufLen;
}

[[noreturn]] void FailMsg(int chan, int32_t op, int err, int32_t value) {
  SendMsg(chan, MSG_ERROR, op, err, value);
  _exit(err == ENOENT ? 127 : 1);
}

long Clone3(uint64_t flags, int* pidfd, int cgroupFd) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = flags | (pidfd ? CLONE_PIDFD : 0);
  if (cgroupFd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cgroupFd);
  }
  args.pidfd = reinterpret_cast<uint64_t>(pidfd);
  args.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
  return syscall(SYS_clone3, &args, sizeof args);
}

void ResetSignals() {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < _NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &sa, nullptr);  // EINVAL for glibc-reserved signals is fine
  }
}

int OpenPtyPair(const char* ptmx, int* master, int* slave, unsigned* number) {
  *master = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*master < 0) return errno;
  int unlock = 0;
  if (ioctl(*master, TIOCSPTLCK, &unlock) < 0) return errno;
  *number = 0;
  if (ioctl(*master, TIOCGPTN, number) < 0) return errno;
  *slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (*slave < 0) return errno;
  return 0;
}

int SendPtyMaster(int chan, int master, unsigned number) {
  Msg m{MSG_PTY, 0, 0, static_cast<int32_t>(number)};
  struct iovec iov;
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct msghdr mh;
  InitMsgHdr(&mh, &iov, &m, sizeof m, cbuf, sizeof cbuf);
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &master, sizeof(int));
  if (sendmsg(chan, &mh, MSG_NOSIGNAL) < 0) return errno;
  close(master);
  return 0;
}

int DupToStdio(int fd) {
  for (int i = 0; i < 3; i++) {
    if (dup2(fd, i) < 0) return errno;
  }
  if (fd > 2) close(fd);
  return 0;
}

int CapBsetDrop(uint64_t keep) {
  for (int cap = 0; cap < 64; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break;  // beyond the last capability this kernel knows
      return errno;
    }
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) return errno;
  }
  return 0;
}

int CapSet(uint64_t eff, uint64_t perm, uint64_t inh) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  data[0].effective = static_cast<uint32_t>(eff);
  data[1].effective = static_cast<uint32_t>(eff >> 32);
  data[0].permitted = static_cast<uint32_t>(perm);
  data[1].permitted = static_cast<uint32_t>(perm >> 32);
  data[0].inheritable = static_cast<uint32_t>(inh);
  data[1].inheritable = static_cast<uint32_t>(inh >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) return errno;
  return 0;
}

int CapAmbientSet(uint64_t amb) {
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int cap = 0; cap < 64; cap++) {
    if (!(amb & (1ULL << cap))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) return errno;
  }
  return 0;
}

int ExecFirst(const char* const* candidates, const char* const* argv, const char* const* envp) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  bool sawEacces = false;
  for (const char* const* c = candidates; *c; c++) {
    execve(*c, const_cast<char* const*>(argv), const_cast<char* const*>(envp));
    int e = errno;
    if (e == EACCES) {
      sawEacces = true;
    } else if (e != ENOENT && e != ENOTDIR) {
      return e;  // found but could not run it (ENOEXEC, ELOOP, ...)
    }
  }
  return sawEacces ? EACCES : ENOENT;
}
