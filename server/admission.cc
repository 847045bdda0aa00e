#include "admission.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "rejection.h"

namespace emfit::server {

struct ClientAccount {
  explicit ClientAccount(std::string key) : key(std::move(key)) {}
  const std::string key;
  int calls = 0;       // guarded by Admission::mu_
  uint64_t bytes = 0;  // guarded by Admission::mu_
};

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    admission_ = std::exchange(other.admission_, nullptr);
    client_ = std::move(other.client_);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Reservation::Absorb(Reservation other) {
  if (admission_ == nullptr) {
    *this = std::move(other);
    return;
  }
  bytes_ += std::exchange(other.bytes_, 0);
}

void Reservation::Release() {
  if (admission_ != nullptr && bytes_ != 0) admission_->Release(client_.get(), bytes_);
  admission_ = nullptr;
  client_.reset();
  bytes_ = 0;
}

Admission::Slot::~Slot() { admission_->Leave(client_.get()); }

const std::string& Admission::Slot::client() const { return client_->key; }

absl::StatusOr<Reservation> Admission::Slot::Reserve(uint64_t bytes, const std::string& what) {
  const Limits& limits = admission_->limits_;
  absl::MutexLock lock(&admission_->mu_);
  if (client_->bytes + bytes > limits.peer_bytes) {
    return MarkBusy(absl::ResourceExhaustedError(absl::StrFormat(
                        "%s: %d more bytes do not fit in one client's share of the in-flight "
                        "budget (--max_inflight_bytes_per_peer=%d, %d held by the calls of %s); "
                        "retry later",
                        what, bytes, limits.peer_bytes, client_->bytes, client_->key)),
                    RejectReason::kClientLimit);
  }
  if (admission_->used_ + bytes > limits.bytes) {
    return MarkBusy(absl::ResourceExhaustedError(absl::StrFormat(
                        "%s: %d more bytes do not fit in the server's in-flight budget "
                        "(--max_inflight_bytes=%d, %d in use); retry later",
                        what, bytes, limits.bytes, admission_->used_)),
                    RejectReason::kInflightBudget);
  }
  admission_->used_ += bytes;
  client_->bytes += bytes;
  return Reservation(admission_, client_, bytes);
}

absl::Status Admission::Slot::CheckFits(uint64_t bytes, const std::string& what,
                                        const std::string& field) const {
  const Limits& limits = admission_->limits_;
  if (bytes > limits.bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: the job needs about %d bytes (%s), more than the server's in-flight budget "
        "(--max_inflight_bytes=%d)",
        field, bytes, what, limits.bytes));
  }
  if (bytes > limits.peer_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: the job needs about %d bytes (%s), more than one client's share of the in-flight "
        "budget (--max_inflight_bytes_per_peer=%d)",
        field, bytes, what, limits.peer_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Admission::Slot>> Admission::Enter(const std::string& client) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<ClientAccount>& account = clients_[client];
  if (account == nullptr) account = std::make_shared<ClientAccount>(client);
  if (account->calls >= limits_.peer_calls) {
    const int calls = account->calls;
    MaybeForgetLocked(account.get());
    return MarkBusy(absl::ResourceExhaustedError(
                        absl::StrFormat("%s has %d calls in progress, the most one client may have "
                                        "(--max_calls_per_peer=%d); retry later",
                                        client, calls, limits_.peer_calls)),
                    RejectReason::kClientLimit);
  }
  ++account->calls;
  return std::unique_ptr<Slot>(new Slot(this, account));
}

uint64_t Admission::used_bytes() const {
  absl::MutexLock lock(&mu_);
  return used_;
}

uint64_t Admission::client_bytes(const std::string& client) const {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client);
  return it == clients_.end() ? 0 : it->second->bytes;
}

int Admission::client_calls(const std::string& client) const {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client);
  return it == clients_.end() ? 0 : it->second->calls;
}

void Admission::Release(ClientAccount* client, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  used_ -= bytes;
  client->bytes -= bytes;
  MaybeForgetLocked(client);
}

void Admission::Leave(ClientAccount* client) {
  absl::MutexLock lock(&mu_);
  --client->calls;
  MaybeForgetLocked(client);
}

void Admission::MaybeForgetLocked(ClientAccount* client) {
  if (client->calls == 0 && client->bytes == 0) clients_.erase(client->key);
}

std::string ClientKey(const std::string& peer, const std::string& identity) {
  if (!identity.empty()) return "id:" + identity;
  // "ipv4:1.2.3.4:5678", "ipv6:[::1]:5678": drop the port; anything else ("unix:...") as is.
  if (absl::StartsWith(peer, "ipv4:") || absl::StartsWith(peer, "ipv6:")) {
    const size_t colon = peer.rfind(':');
    if (colon > 4) return peer.substr(0, colon);
  }
  return peer;
}

namespace {

// The first number in `path`'s first line, if any ("max" and unreadable files: none).
std::optional<uint64_t> ReadNumber(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word)) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(word, &value)) return std::nullopt;
  return value;
}

std::optional<uint64_t> PhysicalMemory() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "MemTotal:")) continue;
    std::vector<absl::string_view> words = absl::StrSplit(rest, ' ', absl::SkipEmpty());
    uint64_t kib = 0;
    if (!words.empty() && absl::SimpleAtoi(words[0], &kib)) return kib * 1024;
  }
  return std::nullopt;
}

// The memory limit of this process's cgroup (v2, or v1's memory controller).
std::optional<uint64_t> CgroupLimit() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    // v2: "0::/path"; v1: "N:memory:/path" (or "N:...,memory,...:/path").
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[0] == "0" && parts[1].empty()) {
      if (auto v = ReadNumber("/sys/fs/cgroup" + parts[2] + "/memory.max")) return v;
      if (auto v = ReadNumber("/sys/fs/cgroup/memory.max")) return v;
    }
    for (absl::string_view controller : absl::StrSplit(parts[1], ',')) {
      if (controller != "memory") continue;
      if (auto v = ReadNumber("/sys/fs/cgroup/memory" + parts[2] + "/memory.limit_in_bytes")) {
        return v;
      }
      return ReadNumber("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    }
  }
  return std::nullopt;
}

}  // namespace

uint64_t DefaultInflightBudget() {
  std::optional<uint64_t> memory = PhysicalMemory();
  if (std::optional<uint64_t> limit = CgroupLimit(); limit.has_value()) {
    memory = memory.has_value() ? std::min(*memory, *limit) : *limit;
  }
  if (!memory.has_value() || *memory == 0) return uint64_t{8} << 30;
  return *memory / 4 * 3;
}

}  // namespace emfit::server
