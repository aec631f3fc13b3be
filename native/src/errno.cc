#include "errno.h"

#include <cstring>

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  if (name) return name;
  return "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  std::string msg = std::string(syscall);
  if (!detail.empty()) msg += " " + detail;
  msg += ": " + std::string(strerror(err)) + " (" + ErrnoName(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

int ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a number");
  }
  return info[i].As<Napi::Number>().Int32Value();
}

bool ArgIsPresent(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && !info[i].IsUndefined() && !info[i].IsNull();
}

void ExportFunctions(Napi::Env env, Napi::Object exports, std::initializer_list<NamedFunction> fns) {
  for (const NamedFunction& f : fns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
}
