// libnftables in-process: one long-lived context per network namespace, JSON in and out. No nft
// process per change, no netlink socket per change (closing one costs the kernel a grace period).
// libnftables is loaded at its first use (dlopen), not linked: it and what it pulls in (libnftnl,
// libmnl, libxtables, libjansson, libgmp) cost ~0.7 ms of loading and relocation in every process
// that loads the addon, and a one-shot nspawn-cni ADD or DEL on an existing network never calls it
// (its firewall work goes over nf_tables netlink directly: src/net/firewall/nfnl.ts).
#include <dlfcn.h>
#include <nftables/libnftables.h>
#include <sys/stat.h>

#include <cerrno>
#include <map>
#include <mutex>
#include <string>

#include "errno.h"
#include "netns.h"

namespace {

// The libnftables functions used here, resolved from libnftables.so.1 at the first nftRun.
struct Lib {
  decltype(&nft_ctx_new) ctx_new;
  decltype(&nft_ctx_free) ctx_free;
  decltype(&nft_ctx_buffer_output) buffer_output;
  decltype(&nft_ctx_buffer_error) buffer_error;
  decltype(&nft_ctx_output_set_flags) output_set_flags;
  decltype(&nft_run_cmd_from_buffer) run_cmd_from_buffer;
  decltype(&nft_ctx_get_output_buffer) get_output_buffer;
  decltype(&nft_ctx_get_error_buffer) get_error_buffer;
};
Lib lib;  // lib.ctx_new is set once the library is loaded

template <typename T>
bool Resolve(void* handle, const char* name, T& out) {
  out = reinterpret_cast<T>(dlsym(handle, name));
  return out != nullptr;
}

// Loads libnftables once (callers hold contexts_mutex); throws what dlopen said, as ELIBACC.
void LoadLib(Napi::Env env) {
  if (lib.ctx_new) return;
  void* h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  Lib l{};
  bool ok = h && Resolve(h, "nft_ctx_new", l.ctx_new) && Resolve(h, "nft_ctx_free", l.ctx_free) &&
            Resolve(h, "nft_ctx_buffer_output", l.buffer_output) && Resolve(h, "nft_ctx_buffer_error", l.buffer_error) &&
            Resolve(h, "nft_ctx_output_set_flags", l.output_set_flags) &&
            Resolve(h, "nft_run_cmd_from_buffer", l.run_cmd_from_buffer) &&
            Resolve(h, "nft_ctx_get_output_buffer", l.get_output_buffer) &&
            Resolve(h, "nft_ctx_get_error_buffer", l.get_error_buffer);
  if (!ok) {
    const char* why = dlerror();
    std::string msg = std::string("(libnftables.so.1: ") + (why ? why : "a function is missing") +
                      "; install libnftables1, the nftables library)";
    if (h) dlclose(h);
    throw ErrnoError(env, ELIBACC, "dlopen", msg);
  }
  lib = l;
}

struct NsKey {
  dev_t dev;
  ino_t ino;
  bool operator<(const NsKey& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
};

// Contexts are created inside their namespace (libnftables opens its netlink socket then) and,
// to be safe against internal reconnects, are only ever used from a thread in that namespace.
std::map<NsKey, nft_ctx*> contexts;
nft_ctx* current_ns_ctx = nullptr;
std::mutex contexts_mutex;

nft_ctx* NewContext(unsigned output_flags) {
  nft_ctx* ctx = lib.ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) return nullptr;
  lib.buffer_output(ctx);
  lib.buffer_error(ctx);
  lib.output_set_flags(ctx, output_flags);
  return ctx;
}

struct Result {
  int rc = 0;
  std::string output, error;
};

void Run(nft_ctx* ctx, const std::string& cmd, unsigned output_flags, Result& r) {
  lib.output_set_flags(ctx, output_flags);
  r.rc = lib.run_cmd_from_buffer(ctx, cmd.c_str());
  const char* out = lib.get_output_buffer(ctx);
  const char* err = lib.get_error_buffer(ctx);
  r.output = out ? out : "";
  r.error = err ? err : "";
}

}  // namespace

// nftRun(command, options?: {netnsFd?: number, json?: boolean (default true), handle?: boolean,
// echo?: boolean}) -> {rc, output, error}
// `command` is nft syntax or a JSON document ({"nftables": [...]}; libnftables detects JSON input).
// rc != 0 is not thrown: the caller turns rc+error into a typed NftError with context.
static Napi::Value NftRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "argument 'command' must be a string");
  std::string cmd = info[0].As<Napi::String>();
  int nsfd = -1;
  unsigned flags = NFT_CTX_OUTPUT_JSON;
  if (ArgIsPresent(info, 1)) {
    if (!info[1].IsObject()) throw Napi::TypeError::New(env, "argument 'options' must be an object");
    auto opts = info[1].As<Napi::Object>();
    if (opts.Has("netnsFd") && opts.Get("netnsFd").IsNumber()) nsfd = opts.Get("netnsFd").As<Napi::Number>().Int32Value();
    if (opts.Has("json") && opts.Get("json").IsBoolean() && !opts.Get("json").As<Napi::Boolean>().Value()) flags &= ~NFT_CTX_OUTPUT_JSON;
    if (opts.Has("handle") && opts.Get("handle").ToBoolean()) flags |= NFT_CTX_OUTPUT_HANDLE;
    if (opts.Has("echo") && opts.Get("echo").ToBoolean()) flags |= NFT_CTX_OUTPUT_ECHO;
  }

  std::lock_guard<std::mutex> lock(contexts_mutex);
  LoadLib(env);
  Result r;
  if (nsfd < 0) {
    if (!current_ns_ctx) current_ns_ctx = NewContext(flags);
    if (!current_ns_ctx) throw ErrnoError(env, ENOMEM, "nft_ctx_new");
    Run(current_ns_ctx, cmd, flags, r);
  } else {
    struct stat st;
    if (fstat(nsfd, &st) < 0) throw ErrnoError(env, errno, "fstat", "(network namespace fd)");
    NsKey key{st.st_dev, st.st_ino};
    bool failed = false;
    int nserr = RunInNetns(nsfd, [&]() {
      auto it = contexts.find(key);
      nft_ctx* ctx = it == contexts.end() ? nullptr : it->second;
      if (!ctx) {
        ctx = NewContext(flags);
        if (!ctx) {
          failed = true;
          return;
        }
        contexts[key] = ctx;
      }
      Run(ctx, cmd, flags, r);
    });
    if (nserr) throw ErrnoError(env, nserr, "setns", "(network namespace fd " + std::to_string(nsfd) + ")");
    if (failed) throw ErrnoError(env, ENOMEM, "nft_ctx_new");
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("rc", Napi::Number::New(env, r.rc));
  res.Set("output", Napi::String::New(env, r.output));
  res.Set("error", Napi::String::New(env, r.error));
  return res;
}

// nftForget(netnsFd): frees the context of a namespace that is going away.
static Napi::Value NftForget(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int nsfd = ArgInt(info, 0, "netnsFd");
  struct stat st;
  if (fstat(nsfd, &st) < 0) throw ErrnoError(env, errno, "fstat", "(network namespace fd)");
  std::lock_guard<std::mutex> lock(contexts_mutex);
  auto it = contexts.find(NsKey{st.st_dev, st.st_ino});
  if (it != contexts.end()) {
    lib.ctx_free(it->second);  // a context exists only once the library is loaded
    contexts.erase(it);
  }
  return env.Undefined();
}

void InitNft(Napi::Env env, Napi::Object exports) {
  exports.Set("nftRun", Napi::Function::New(env, NftRun));
  exports.Set("nftForget", Napi::Function::New(env, NftForget));
}
