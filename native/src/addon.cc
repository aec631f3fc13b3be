// Export table of the nspawn-ts native addon. Each concern registers its own functions; protocol
// logic (netlink, DHCP, nftables grammar) lives in TypeScript, not here.
#include <napi.h>

void InitSock(Napi::Env env, Napi::Object exports);
void InitNetns(Napi::Env env, Napi::Object exports);
void InitNft(Napi::Env env, Napi::Object exports);
void InitContainer(Napi::Env env, Napi::Object exports);
void InitLock(Napi::Env env, Napi::Object exports);
void InitEnter(Napi::Env env, Napi::Object exports);
void InitPacket(Napi::Env env, Napi::Object exports);
void InitFsat(Napi::Env env, Napi::Object exports);
void InitPages(Napi::Env env, Napi::Object exports);
void InitExit(Napi::Env env, Napi::Object exports);

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitSock(env, exports);
  InitNetns(env, exports);
  InitNft(env, exports);
  InitContainer(env, exports);
  InitLock(env, exports);
  InitEnter(env, exports);
  InitPacket(env, exports);
  InitFsat(env, exports);
  InitPages(env, exports);
  InitExit(env, exports);
  return exports;
}

NODE_API_MODULE(nspawn_native, Init)
