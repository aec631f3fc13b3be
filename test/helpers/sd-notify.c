// sd-notify MESSAGE [COMMAND [ARGS...]]: sends MESSAGE (with "\n" written as a real newline
// already) to $NOTIFY_SOCKET as one datagram, then execs COMMAND if one is given (so a container's
// PID 1 can notify and go on as PID 1). Built static (staticHelper in test/helpers/traffic.ts) to
// run inside busybox test roots, which have no systemd-notify.
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sd-notify MESSAGE [COMMAND [ARGS...]]\n");
    return 2;
  }
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "sd-notify: NOTIFY_SOCKET is not set or too long\n");
    return 1;
  }
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strcpy(a.sun_path, path);
  if (path[0] == '@') a.sun_path[0] = '\0';
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + (path[0] == '@' ? 0 : 1));
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0 || sendto(s, argv[1], strlen(argv[1]), 0, (struct sockaddr *)&a, len) < 0) {
    fprintf(stderr, "sd-notify: %s: %s\n", path, strerror(errno));
    return 1;
  }
  close(s);
  if (argc > 2) {
    execvp(argv[2], argv + 2);
    fprintf(stderr, "sd-notify: %s: %s\n", argv[2], strerror(errno));
    return 127;
  }
  return 0;
}
