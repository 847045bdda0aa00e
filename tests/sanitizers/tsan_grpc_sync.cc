// ThreadSanitizer builds only (tests/CMakeLists.txt): tells TSan how libgrpc hands a batch from
// the thread that starts it to the thread that completes it.
//
// Debian's gRPC is not built with TSan. A reactor's operation (StartRead, StartWrite, Finish,
// StartCall ...) runs through gRPC's C++ headers, compiled into our binaries, to one
// grpc_call_start_batch(call, ops, n, tag) in libgrpc; the batch's completion comes back
// through the completion queue as that `tag` (a callback tag), which libgrpc++'s threads take
// with grpc_completion_queue_next and run: gRPC's bookkeeping first (the tag's callback, the
// interceptor hooks, the received message parsed into the reactor's buffer), then the reaction
// (OnReadDone ...). The queue orders the two where TSan cannot see it. This file defines both
// functions in the test executable, which interposes them over libgrpc's for libgrpc++: the
// first releases at the tag's address before starting the batch, the second acquires there
// once the batch comes back complete. Everything the starting thread did before (the message
// serialised, the tag set) then happens before everything its completion does.
// Debian's gRPC 1.51 serves the callback API's completion queue from such libgrpc++ threads
// ("nexting_thread"). A gRPC that ran callbacks from its own pollers instead would bypass the
// second function, and TSan would report the hand-offs again: this fails loudly, not silently.
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

namespace {

template <class Fn>
Fn Real(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_grpc_sync: %s not found in libgrpc\n", name);
    std::abort();
  }
  return reinterpret_cast<Fn>(f);
}

using StartBatchFn = grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*);
using NextFn = grpc_event (*)(grpc_completion_queue*, gpr_timespec, void*);

}  // namespace

extern "C" grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops,
                                                 void* tag, void* reserved) {
  static const auto real = Real<StartBatchFn>("grpc_call_start_batch");
  __tsan_release(tag);
  return real(call, ops, nops, tag, reserved);
}

extern "C" grpc_event grpc_completion_queue_next(grpc_completion_queue* cq, gpr_timespec deadline,
                                                 void* reserved) {
  static const auto real = Real<NextFn>("grpc_completion_queue_next");
  grpc_event event = real(cq, deadline, reserved);
  if (event.type == GRPC_OP_COMPLETE) __tsan_acquire(event.tag);
  return event;
}
