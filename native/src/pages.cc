// dropPages(start, length): madvise(MADV_DONTNEED) of one range of this process's own mappings. Only
// for read-only private file mappings without anonymous (copied-on-write) pages, which the caller
// (src/common/startup-pages.ts) finds in /proc/self/smaps: their pages stay in the page cache and
// come back on the next touch, unchanged. On memory that was written the advice discards the writes.
#include <sys/mman.h>

#include <cerrno>
#include <cmath>
#include <cstdint>

#include "errno.h"

static double ArgNumber(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a number");
  }
  return info[i].As<Napi::Number>().DoubleValue();
}

static Napi::Value DropPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double start = ArgNumber(info, 0, "start");
  double length = ArgNumber(info, 1, "length");
  const double page = 4096;
  if (start < 0 || length <= 0 || std::fmod(start, page) != 0 || start + length > 9007199254740992.0) {
    throw Napi::RangeError::New(env, "dropPages: start must be page-aligned and the range in the address space");
  }
  void* addr = reinterpret_cast<void*>(static_cast<uintptr_t>(start));
  if (madvise(addr, static_cast<size_t>(length), MADV_DONTNEED) < 0) throw ErrnoError(env, errno, "madvise", "(MADV_DONTNEED)");
  return env.Undefined();
}

void InitPages(Napi::Env env, Napi::Object exports) {
  ExportFunctions(env, exports, {{"dropPages", DropPages}});
}
