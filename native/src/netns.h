// Work inside another network namespace, without ever moving a thread that Node owns.
#pragma once
#include <functional>

// Runs `fn` on a short-lived thread that first setns()es into `nsfd` (CLONE_NEWNET) and exits after.
// Sockets made there stay bound to that namespace. Returns 0, or the errno of setns (fn not run).
int RunInNetns(int nsfd, const std::function<void()>& fn);
