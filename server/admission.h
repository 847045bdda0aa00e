// Admission: the server's in-flight memory budget and each client's share of it and of the
// calls in progress, so that no client, and no call that declares data it does not send, can
// lock the others out (docs/operations.md, "Admission and limits").
#ifndef EMFIT_SERVER_ADMISSION_H_
#define EMFIT_SERVER_ADMISSION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace emfit::server {

class Admission;
struct ClientAccount;  // one client's calls and bytes (admission.cc)

// Bytes of the in-flight budget held by one call, counted against the server's budget and its
// client's share; released when the last owner lets go. Movable, not copyable.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept { *this = std::move(other); }
  Reservation& operator=(Reservation&& other) noexcept;
  ~Reservation() { Release(); }
  // Takes over `other`'s bytes (of the same client), released together.
  void Absorb(Reservation other);
  void Release();
  uint64_t bytes() const { return bytes_; }

 private:
  friend class Admission;
  Reservation(Admission* admission, std::shared_ptr<ClientAccount> client, uint64_t bytes)
      : admission_(admission), client_(std::move(client)), bytes_(bytes) {}

  Admission* admission_ = nullptr;
  std::shared_ptr<ClientAccount> client_;
  uint64_t bytes_ = 0;
};

// The budget of data and working memory that calls may hold together (--max_inflight_bytes),
// at most `peer_bytes` of it for one client (--max_inflight_bytes_per_peer), and at most
// `peer_calls` calls in progress per client (--max_calls_per_peer). A client is its
// authenticated identity (bearer token name, client certificate) when it has one, else its
// network address without the port. Thread-safe; outlives every Slot and Reservation.
class Admission {
 public:
  struct Limits {
    uint64_t bytes = 0;
    uint64_t peer_bytes = 0;
    int peer_calls = 0;
  };
  explicit Admission(Limits limits) : limits_(limits) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // One call in progress of one client; reservations are made through it. The call's place is
  // freed when the Slot dies (its reservations may live on, e.g. in a queued job).
  class Slot {
   public:
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();
    const std::string& client() const;
    // Reserves `bytes` for this call; RESOURCE_EXHAUSTED marked busy (MarkBusy: retry later)
    // when the server's budget or the client's share is full. `what` names the request's part
    // in the message ("chunk", "header: working memory", ...).
    absl::StatusOr<Reservation> Reserve(uint64_t bytes, const std::string& what);
    // RESOURCE_EXHAUSTED, not busy (a limit: retrying cannot help), when `bytes` would not fit
    // even with nothing else in flight. `what` describes the bytes ("1000 bytes of data and 10
    // of working memory").
    absl::Status CheckFits(uint64_t bytes, const std::string& what, const std::string& field) const;

   private:
    friend class Admission;
    Slot(Admission* admission, std::shared_ptr<ClientAccount> client)
        : admission_(admission), client_(std::move(client)) {}
    Admission* const admission_;
    const std::shared_ptr<ClientAccount> client_;
  };

  // A place for a new call of `client`; RESOURCE_EXHAUSTED marked busy when the client has
  // peer_calls calls in progress.
  absl::StatusOr<std::unique_ptr<Slot>> Enter(const std::string& client);

  const Limits& limits() const { return limits_; }
  uint64_t used_bytes() const;
  // The bytes held and calls in progress of `client` (0 when it has none), for observation.
  uint64_t client_bytes(const std::string& client) const;
  int client_calls(const std::string& client) const;

 private:
  friend class Reservation;
  void Release(ClientAccount* client, uint64_t bytes);
  void Leave(ClientAccount* client);
  // Forgets `client` once it holds nothing.
  void MaybeForgetLocked(ClientAccount* client) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Limits limits_;
  mutable absl::Mutex mu_;
  uint64_t used_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::shared_ptr<ClientAccount>> clients_ ABSL_GUARDED_BY(mu_);
};

// The client key of a call (see Admission): "id:" + `identity` when it is not empty, else the
// address of gRPC's `peer` string without its port ("ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7",
// "ipv6:[::1]:51234" -> "ipv6:[::1]").
std::string ClientKey(const std::string& peer, const std::string& identity);

// The default in-flight budget: three quarters of the memory this process may use (the
// machine's physical memory, or the cgroup's memory limit when lower); 8 GiB when neither can
// be read.
uint64_t DefaultInflightBudget();

}  // namespace emfit::server

#endif  // EMFIT_SERVER_ADMISSION_H_
