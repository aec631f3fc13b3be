// connrate: new TCP connections per second — the per-connection cost a forwarding path adds (a
// NAT lookup, a conntrack entry), which throughput tests hide. Built by bench/ports with cc.
//
//   connrate serve PORT                          accept and close, until killed
//   connrate connect HOST PORT SECONDS PARALLEL  prints "CONNS ERRORS": handshakes completed
//                                                per second, with PARALLEL attempts in flight
//
// The client resets each connection as soon as its handshake completes (SO_LINGER 0): no
// TIME_WAIT, so its ephemeral ports never run out, and the server's accept queue stays short.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int serve(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4096) < 0) {
    perror("connrate serve");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
  epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    struct epoll_event out;
    if (epoll_wait(ep, &out, 1, -1) < 0 && errno != EINTR) return 1;
    for (;;) {
      int c = accept4(s, NULL, NULL, SOCK_NONBLOCK);
      if (c < 0) break;
      close(c);
    }
  }
}

static int open_one(int ep, struct sockaddr_in *to) {
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c < 0) return -1;
  int r = connect(c, (struct sockaddr *)to, sizeof *to);
  if (r < 0 && errno != EINPROGRESS) {
    close(c);
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLOUT, .data.fd = c};
  epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
  return c;
}

static int client(const char *host, int port, double seconds, int parallel) {
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
    fprintf(stderr, "connrate: bad address %s\n", host);
    return 2;
  }
  int ep = epoll_create1(0);
  for (int i = 0; i < parallel; i++) open_one(ep, &to);
  long conns = 0, errors = 0;
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  double end = now() + seconds;
  struct epoll_event evs[256];
  while (now() < end) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      int c = evs[i].data.fd;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) conns++;
      else errors++;
      setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(c);
      open_one(ep, &to);
    }
  }
  printf("%.0f %ld\n", conns / seconds, errors);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "serve") == 0) return serve(atoi(argv[2]));
  if (argc == 6 && strcmp(argv[1], "connect") == 0) return client(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]));
  fprintf(stderr, "usage: connrate serve PORT | connrate connect HOST PORT SECONDS PARALLEL\n");
  return 2;
}
