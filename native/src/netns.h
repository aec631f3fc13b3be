// Work inside another network namespace; the calling thread is back in its own before this returns.
#pragma once
#include <functional>

// Runs `fn` on the calling thread inside `nsfd` (setns CLONE_NEWNET), then returns the thread to its
// own namespace (a thread per call cost up to milliseconds on a busy machine: the launcher makes
// several such sockets while its container waits). Sockets made there stay bound to that namespace.
// `fn` must not call into JavaScript. Returns 0, or the errno of setns (fn not run).
int RunInNetns(int nsfd, const std::function<void()>& fn);
