// exitNow(code): _exit(2) — the end of a short-lived process once its work and answer are done,
// without Node's teardown (freeing the V8 heap page by page, the platform's threads, libuv): ~1 ms
// that a CNI runtime waits for after every nspawn-cni call. Only for a process whose output is
// written synchronously (nothing queued in a stream) and whose 'exit' listeners have run.
#include <napi.h>
#include <unistd.h>

#include "errno.h"

static Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  int code = ArgInt(info, 0, "code");
  _exit(code & 0xff);
}

void InitExit(Napi::Env env, Napi::Object exports) { exports.Set("exitNow", Napi::Function::New(env, ExitNow)); }
