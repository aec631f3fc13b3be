// bin/nspawn-cni: the executable a CNI runtime starts for every call (built by scripts/build.sh, and by
// scripts/install-package.sh in an installed package). It answers VERSION itself and runs the plugin
// (bin/nspawn-cni.cjs on Node: src/cni/main.ts) for everything else.
//
// Why: podman runs VERSION once per network each time it loads its networks, before every ADD. On Node
// that is a Node start (~30 ms of CPU here), against ~3 ms for a reference plugin in Go; this answers
// it in well under a millisecond. For any other call it does what the old `#!/usr/bin/env -S` line
// did — NODE_EXTRA_CA_CERTS out, MALLOC_ARENA_MAX=1 in, execvp("node") with the V8 flags of
// bin/nspawn-cni.cjs's #! line (the code cache is accepted only under them) — one exec, as env's was.
//
// What it answers: CNI_COMMAND=VERSION, CNI_ARGS empty or KEY=VALUE parts (as src/cni/config.ts
// parseEnv accepts), and stdin exactly `{"cniVersion":"X"}` (JSON whitespace between the tokens) with
// X printable ASCII without `"` or `\` — what libcni sends. The answer is the bytes src/cni/main.ts
// writes for it (config.ts versionResult, JSON.stringify, a newline); test/unit/cni-front.test.ts
// compares the two over supported, unsupported and odd versions. Any other VERSION input (escapes,
// other keys, not JSON, a bad CNI_ARGS, stdin unreadable) goes to Node unchanged: what was read of stdin
// is handed over in a memfd (a seekable stdin is rewound instead), so Node reads the same bytes and
// gives its own answer or error. (Only a pipe that fails after giving some bytes — no runtime's — would
// reach Node as those bytes and EOF rather than as the error.)
//
// Why hand-written rather than a JSON library or another front: the input it answers is one fixed shape
// of a few dozen bytes, so a matcher of that shape is shorter than binding a parser (cJSON, jansson —
// neither installed, and a full parser would then have to be kept byte-for-byte with JSON.parse's
// edge cases; here everything unusual simply goes to Node, which is the reference). A shell front
// (dash, ~1 ms) cannot hand NUL bytes or an unread rest of stdin to Node, and Node-side options were
// measured: no node flag, V8 snapshot (cnisnap) or bundle change takes Node's own start below ~23 ms.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// bin/nspawn-cni.cjs's #! line: `env -S -u NODE_EXTRA_CA_CERTS MALLOC_ARENA_MAX=1 node FLAGS`
// (the unit test checks these against it)
static const char *const NODE_FLAGS[] = {"--min-semi-space-size=16", "--max-semi-space-size=16", "--v8-pool-size=1"};
#define NODE_SCRIPT "nspawn-cni.cjs"

// src/cni/config.ts SUPPORTED_VERSIONS; 1.1.0 is listed only to a runtime that asks with 1.1.0 or later
#define SUPPORTED "\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\""
#define SUPPORTED_1_1 ",\"1.1.0\""

// src/cni/main.ts MAX_CONFIG: Node stops reading (and refuses) beyond it, so the front never needs more
#define MAX_CONFIG (1 << 20)
// an input answered here is a few dozen bytes
#define SMALL 4096

struct input {
  char *buf;
  size_t len, cap;
  int eof;  // read() said 0
  int err;  // errno of a failed read, 0 if none
};

// Reads fd 0 until EOF, an error, or more than `limit` bytes in all. A non-blocking stdin is waited for.
static void read_input(struct input *in, size_t limit) {
  while (!in->eof && !in->err && in->len <= limit) {
    if (in->len == in->cap) {
      size_t cap = in->cap ? in->cap * 2 : SMALL;
      if (cap > limit + 1) cap = limit + 1;
      char *b = realloc(in->buf, cap);
      if (b == NULL) {
        in->err = ENOMEM;
        return;
      }
      in->buf = b;
      in->cap = cap;
    }
    ssize_t n = read(0, in->buf + in->len, in->cap - in->len);
    if (n > 0) {
      in->len += (size_t)n;
    } else if (n == 0) {
      in->eof = 1;
    } else if (errno == EAGAIN) {
      struct pollfd p = {.fd = 0, .events = POLLIN};
      (void)poll(&p, 1, -1);
    } else if (errno != EINTR) {
      in->err = errno;
    }
  }
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

static int skip_token(const char **p, const char *end, const char *token) {
  size_t n = strlen(token);
  if ((size_t)(end - *p) < n || memcmp(*p, token, n) != 0) return 0;
  *p += n;
  return 1;
}

// `{"cniVersion":"X"}` and nothing else: sets X (not NUL-terminated). 0 when the input is anything else.
static int simple_version(const char *p, size_t len, const char **ver, size_t *vlen) {
  const char *end = p + len;
  p = skip_ws(p, end);
  if (!skip_token(&p, end, "{")) return 0;
  p = skip_ws(p, end);
  if (!skip_token(&p, end, "\"cniVersion\"")) return 0;
  p = skip_ws(p, end);
  if (!skip_token(&p, end, ":")) return 0;
  p = skip_ws(p, end);
  if (!skip_token(&p, end, "\"")) return 0;
  const char *v = p;
  // printable ASCII but `"` and `\`: JSON.parse reads it as itself and JSON.stringify writes it back so
  while (p < end && *p >= 0x20 && *p <= 0x7e && *p != '"' && *p != '\\') p++;
  if (!skip_token(&p, end, "\"")) return 0;
  *ver = v;
  *vlen = (size_t)(p - 1 - v);
  p = skip_ws(p, end);
  if (!skip_token(&p, end, "}")) return 0;
  return skip_ws(p, end) == end;
}

// config.ts versionAtLeast(v, "1.1.0"): the first three "."-separated parts as numbers (a part that
// is not all ASCII digits, or missing, is 0), compared in order.
static int at_least_1_1_0(const char *v, size_t n) {
  static const unsigned long min[3] = {1, 1, 0};
  const char *p = v, *end = v + n;
  int have = 1;  // "".split(".") is [""]: a first part always exists
  for (int i = 0; i < 3; i++) {
    unsigned long value = 0;
    int big = 0;
    if (have) {
      const char *q = p;
      while (q < end && *q != '.') q++;
      const char *d = p;
      while (d < q && *d >= '0' && *d <= '9') d++;
      if (d == q && q > p) {  // all digits: its value (a number above 9 digits is larger than any part of min)
        const char *s = p;
        while (s < q - 1 && *s == '0') s++;
        if (q - s > 9) big = 1;
        else for (; s < q; s++) value = value * 10 + (unsigned long)(*s - '0');
      }
      have = q < end;  // a "." follows: there is a next part
      p = q < end ? q + 1 : q;
    }
    if (big) return 1;
    if (value != min[i]) return value > min[i];
  }
  return 1;
}

// parseEnv's CNI_ARGS check: every non-empty ";"-separated part is KEY=VALUE with a non-empty KEY
static int args_valid(const char *args) {
  if (args == NULL) return 1;
  for (const char *p = args; *p;) {
    const char *q = strchr(p, ';');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n > 0) {
      const char *eq = memchr(p, '=', n);
      if (eq == NULL || eq == p) return 0;
    }
    p += n;
    if (*p == ';') p++;
  }
  return 1;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && errno == EAGAIN) {
      struct pollfd q = {.fd = fd, .events = POLLOUT};
      (void)poll(&q, 1, -1);
    } else if (!(w < 0 && errno == EINTR)) {
      return -1;
    }
  }
  return 0;
}

static int answer_version(const char *ver, size_t vlen) {
  static const char head[] = "{\"cniVersion\":\"";
  static const char mid[] = "\",\"supportedVersions\":[" SUPPORTED;
  static const char tail[] = "]}\n";
  size_t n = 0;
  char *out = malloc(sizeof head + vlen + sizeof mid + sizeof SUPPORTED_1_1 + sizeof tail);
  if (out == NULL) return -1;
  memcpy(out + n, head, sizeof head - 1), n += sizeof head - 1;
  memcpy(out + n, ver, vlen), n += vlen;
  memcpy(out + n, mid, sizeof mid - 1), n += sizeof mid - 1;
  if (at_least_1_1_0(ver, vlen)) memcpy(out + n, SUPPORTED_1_1, sizeof SUPPORTED_1_1 - 1), n += sizeof SUPPORTED_1_1 - 1;
  memcpy(out + n, tail, sizeof tail - 1), n += sizeof tail - 1;
  signal(SIGPIPE, SIG_IGN);  // as Node: a closed stdout is a failed write (exit 1), not a signal
  int rc = write_all(1, out, n);
  free(out);
  return rc;
}

// Gives Node the stdin the front read: the same bytes, then EOF (Node reads no further than MAX_CONFIG + 1).
static int hand_back(const struct input *in, off_t start) {
  if (start >= 0) return lseek(0, start, SEEK_SET) == start ? 0 : -1;  // a file: rewound
  if (in->len == 0) return 0;  // nothing taken (EOF or an error Node will meet again)
  int fd = memfd_create("nspawn-cni-stdin", 0);
  if (fd < 0) return -1;
  if (write_all(fd, in->buf, in->len) < 0 || lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) {
    close(fd);
    return -1;
  }
  close(fd);
  return 0;
}

// This executable's directory (symlinks resolved: /opt/cni/bin/nspawn-cni may be a link to it), with "/".
static int own_dir(const char *argv0, char *dir, size_t size) {
  ssize_t n = readlink("/proc/self/exe", dir, size - 1);
  if (n > 0) {
    dir[n] = '\0';
  } else {
    char *real = realpath(argv0, NULL);  // no /proc: the path we were started by
    if (real == NULL || strlen(real) >= size) return free(real), -1;
    strcpy(dir, real);
    free(real);
  }
  char *slash = strrchr(dir, '/');
  if (slash == NULL) return -1;
  slash[1] = '\0';
  return 0;
}

static void run_node(int argc, char **argv) {
  char script[PATH_MAX];
  if (own_dir(argv[0], script, sizeof script - sizeof NODE_SCRIPT) < 0) {
    fprintf(stderr, "nspawn-cni: cannot find its own directory (/proc/self/exe): %s\n", strerror(errno));
    exit(127);
  }
  strcat(script, NODE_SCRIPT);
  size_t nflags = sizeof NODE_FLAGS / sizeof NODE_FLAGS[0];
  char **args = calloc((size_t)argc + nflags + 2, sizeof *args);
  if (args == NULL) exit(127);
  size_t k = 0;
  args[k++] = "node";
  for (size_t i = 0; i < nflags; i++) args[k++] = (char *)NODE_FLAGS[i];
  args[k++] = script;
  for (int i = 1; i < argc; i++) args[k++] = argv[i];
  args[k] = NULL;
  unsetenv("NODE_EXTRA_CA_CERTS");  // a CA file Node would parse at start; the plugin makes no TLS connection
  setenv("MALLOC_ARENA_MAX", "1", 1);
  execvp("node", args);
  fprintf(stderr, "nspawn-cni: cannot run node (%s): %s\n", script, strerror(errno));
  exit(127);
}

int main(int argc, char **argv) {
  const char *command = getenv("CNI_COMMAND");
  if (command != NULL && strcmp(command, "VERSION") == 0 && args_valid(getenv("CNI_ARGS"))) {
    struct input in = {0};
    off_t start = lseek(0, 0, SEEK_CUR);  // -1 for a pipe
    read_input(&in, SMALL);
    const char *ver;
    size_t vlen;
    if (in.eof && simple_version(in.buf, in.len, &ver, &vlen)) return answer_version(ver, vlen) < 0 ? 1 : 0;
    if (start < 0) read_input(&in, MAX_CONFIG);  // the rest, for Node
    if (hand_back(&in, start) < 0) {
      fprintf(stderr, "nspawn-cni: cannot hand stdin to node: %s\n", strerror(errno));
      return 1;
    }
    free(in.buf);
  }
  run_node(argc, argv);
  return 127;
}
