#ifndef EMFIT_CORE_EXEC_CANCELLATION_H_
#define EMFIT_CORE_EXEC_CANCELLATION_H_

#include <atomic>

namespace emfit {

// A one-shot cancellation flag. Thread-safe: any thread may call Cancel(), any thread may poll
// IsCancelled(). Core receives it as `const CancellationToken*` and only polls it.
class CancellationToken {
 public:
  CancellationToken() = default;
  CancellationToken(const CancellationToken&) = delete;
  CancellationToken& operator=(const CancellationToken&) = delete;

  void Cancel() { cancelled_.store(true, std::memory_order_release); }
  bool IsCancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> cancelled_{false};
};

}  // namespace emfit

#endif  // EMFIT_CORE_EXEC_CANCELLATION_H_
