// Transport security and bearer tokens of emfitd: TLS / mTLS credentials, the token file, and
// the gRPC auth metadata processor that checks every call's token.
#ifndef EMFIT_SERVER_AUTH_H_
#define EMFIT_SERVER_AUTH_H_

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace emfit::server {

class Metrics;

// Whether `host` (a --host value: a name or an address) means this machine only: localhost,
// 127.0.0.0/8, ::1.
bool IsLoopbackHost(absl::string_view host);

// The bearer tokens of --token_file: one token per line, or `name:token` so that logs can name
// the identity (never the token); blank lines and lines starting with '#' are ignored. Reloaded
// on request (SIGHUP) or when the file changes (ReloadIfChanged, polled). Thread-safe.
class TokenStore {
 public:
  // Reads `path`; an unreadable or malformed file is an error naming the line.
  static absl::StatusOr<std::unique_ptr<TokenStore>> Load(const std::string& path);

  // Re-reads the file. On error the previous tokens stay in force and the error is returned.
  absl::Status Reload();
  // Reloads when the file's modification time, size or inode changed since the last read.
  // Returns the reload's status (OK when nothing changed).
  absl::Status ReloadIfChanged();

  // The identity of `token`: its name, or "line N" for an unnamed token; nullopt if `token`
  // is not valid. Compares in time independent of where a token differs.
  std::optional<std::string> Identify(absl::string_view token) const;

  const std::string& path() const { return path_; }
  size_t size() const;
  // Incremented by each successful (re)load.
  uint64_t generation() const;

 private:
  struct Entry {
    std::string name;
    std::string token;
  };
  struct FileStamp {
    int64_t mtime_ns = 0;
    off_t size = 0;
    ino_t inode = 0;
    bool operator==(const FileStamp& o) const {
      return mtime_ns == o.mtime_ns && size == o.size && inode == o.inode;
    }
  };
  explicit TokenStore(std::string path) : path_(std::move(path)) {}
  static absl::StatusOr<std::vector<Entry>> Parse(const std::string& path, FileStamp* stamp);

  const std::string path_;
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  FileStamp stamp_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// Checks the `authorization: Bearer TOKEN` metadata of every call against `tokens`, except the
// health service's (probes carry no token). A missing or wrong token ends the call with
// UNAUTHENTICATED before any handler runs. Non-blocking (a lookup in memory).
class TokenAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  // `tokens` and `metrics` (for rejected calls) must outlive the processor.
  TokenAuthProcessor(const TokenStore* tokens, Metrics* metrics)
      : tokens_(tokens), metrics_(metrics) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const TokenStore* const tokens_;
  Metrics* const metrics_;
};

// The token of a call's `authorization` metadata value ("Bearer TOKEN"); empty if malformed.
absl::string_view BearerToken(absl::string_view authorization);

struct TransportOptions {
  std::string host;             // --host
  bool allow_insecure = false;  // --allow_insecure: plaintext on a non-loopback address
  std::string tls_cert;         // --tls_cert: PEM certificate chain file
  std::string tls_key;          // --tls_key: PEM private key file
  std::string tls_client_ca;    // --tls_client_ca: PEM CA file; requires and verifies client certs
};

// The listening credentials: TLS (mTLS with a client CA) when a certificate is given;
// otherwise plaintext, allowed on a loopback host only unless allow_insecure. With
// `processor` (tokens configured) plaintext must be on loopback (tokens never cross a network
// in clear text) and uses gRPC's local credentials, which let the processor run.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportOptions& options, std::shared_ptr<grpc::AuthMetadataProcessor> processor);

// The contents of a file named by `flag` (for messages), e.g. a PEM file.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, absl::string_view flag);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_AUTH_H_
