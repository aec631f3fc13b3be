// udp-echo PORT: answers every datagram with "PORT PEER-ADDRESS\n" (what the firewall tests' echo
// server answers), so a test sees where the datagram came from. Built static (test/helpers/traffic.ts)
// to run inside busybox test roots, which have no UDP server applet.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: udp-echo PORT\n");
    return 2;
  }
  int port = atoi(argv[1]);
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
    perror("udp-echo");
    return 1;
  }
  printf("udp-echo ready\n");
  fflush(stdout);
  for (;;) {
    char buf[2048], out[128], peer[INET_ADDRSTRLEN];
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    if (recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len) < 0) continue;
    inet_ntop(AF_INET, &from.sin_addr, peer, sizeof peer);
    int n = snprintf(out, sizeof out, "%d %s\n", port, peer);
    sendto(s, out, n, 0, (struct sockaddr *)&from, len);
  }
}
