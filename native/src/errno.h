// The addon's one failure path (a JS Error carrying errno, its symbolic code and the syscall), and
// the argument, EINTR and export-table helpers every concern uses.
#pragma once
#include <napi.h>

#include <cerrno>
#include <initializer_list>
#include <string>

// Builds (does not throw) an Error like Node's own: err.code = 'EEXIST', err.errno = 17 (positive),
// err.syscall = 'socket'. `detail` names the object the call was about (a path, an interface).
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail = "");

// Symbolic name of an errno value ("EEXIST"), or "E<number>" when the C library has none.
std::string ErrnoName(int err);

// Argument helpers: a TypeError naming the argument when it has the wrong type.
int ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name);
bool ArgIsPresent(const Napi::CallbackInfo& info, size_t i);

// Repeats a system call while it fails with EINTR; returns its last result (errno as it left it).
template <typename Call>
auto RetryEintr(Call call) -> decltype(call()) {
  decltype(call()) r;
  do {
    r = call();
  } while (r < 0 && errno == EINTR);
  return r;
}

// One entry of a concern's export table: exports[name] = a JS function calling `fn`.
struct NamedFunction {
  const char* name;
  Napi::Function::Callback fn;
};
void ExportFunctions(Napi::Env env, Napi::Object exports, std::initializer_list<NamedFunction> fns);
