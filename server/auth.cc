#include "auth.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "logging.h"
#include "metrics.h"

namespace emfit::server {
namespace {

constexpr absl::string_view kHealthPathPrefix = "/grpc.health.v1.Health/";

bool ValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-' && c != '.' && c != '@') return false;
  }
  return true;
}

// Equal contents, in time that depends on the lengths only.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// The method of a call's :path ("/emfit.v1.EmFitService/Fit" -> "Fit").
absl::string_view MethodOfPath(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == absl::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

bool IsLoopbackHost(absl::string_view host) {
  std::string h(absl::StripSuffix(absl::StripPrefix(host, "["), "]"));
  if (absl::EqualsIgnoreCase(h, "localhost")) return true;
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrFormat("%s: cannot read '%s'", flag, path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<std::vector<TokenStore::Entry>> TokenStore::Parse(const std::string& path,
                                                                 FileStamp* stamp) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--token_file: cannot read '%s'", path));
  }
  *stamp = FileStamp{int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec, st.st_size,
                     st.st_ino};
  absl::StatusOr<std::string> text = ReadSmallFile(path, "--token_file");
  if (!text.ok()) return text.status();
  std::vector<Entry> entries;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    Entry e;
    if (const size_t colon = line.find(':'); colon != absl::string_view::npos) {
      e.name = std::string(line.substr(0, colon));
      e.token = std::string(line.substr(colon + 1));
      if (!ValidName(e.name)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--token_file: line %d of '%s': the name before ':' must be letters, digits and "
            "_-.@ only",
            line_number, path));
      }
    } else {
      e.name = absl::StrFormat("line %d", line_number);
      e.token = std::string(line);
    }
    for (char c : e.token) {
      if (absl::ascii_isspace(c) || absl::ascii_iscntrl(c)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--token_file: line %d of '%s': a token may not contain spaces", line_number, path));
      }
    }
    if (e.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--token_file: line %d of '%s': empty token", line_number, path));
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Load(const std::string& path) {
  std::unique_ptr<TokenStore> store(new TokenStore(path));
  if (absl::Status s = store->Reload(); !s.ok()) return s;
  return store;
}

absl::Status TokenStore::Reload() {
  FileStamp stamp;
  absl::StatusOr<std::vector<Entry>> entries = Parse(path_, &stamp);
  absl::MutexLock lock(&mu_);
  // A file that failed to parse is not re-read until it changes again.
  stamp_ = stamp;
  if (!entries.ok()) return entries.status();
  entries_ = *std::move(entries);
  ++generation_;
  return absl::OkStatus();
}

absl::Status TokenStore::ReloadIfChanged() {
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--token_file: cannot read '%s'", path_));
  }
  const FileStamp now{int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec, st.st_size,
                      st.st_ino};
  {
    absl::MutexLock lock(&mu_);
    if (now == stamp_) return absl::OkStatus();
  }
  return Reload();
}

std::optional<std::string> TokenStore::Identify(absl::string_view token) const {
  if (token.empty()) return std::nullopt;
  absl::MutexLock lock(&mu_);
  std::optional<std::string> found;
  for (const Entry& e : entries_) {
    // Every entry is compared, so the time does not say which one matched.
    if (ConstantTimeEquals(e.token, token) && !found.has_value()) found = e.name;
  }
  return found;
}

size_t TokenStore::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

uint64_t TokenStore::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

absl::string_view BearerToken(absl::string_view authorization) {
  constexpr absl::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kBearer.size()), kBearer)) {
    return "";
  }
  return absl::StripAsciiWhitespace(authorization.substr(kBearer.size()));
}

grpc::Status TokenAuthProcessor::Process(const InputMetadata& auth_metadata,
                                         grpc::AuthContext* /*context*/,
                                         OutputMetadata* /*consumed_auth_metadata*/,
                                         OutputMetadata* /*response_metadata*/) {
  absl::string_view path;
  if (auto it = auth_metadata.find(":path"); it != auth_metadata.end()) {
    path = absl::string_view(it->second.data(), it->second.size());
  }
  if (absl::StartsWith(path, kHealthPathPrefix)) return grpc::Status::OK;
  auto it = auth_metadata.find("authorization");
  const char* problem = nullptr;
  if (it == auth_metadata.end()) {
    problem =
        "this server requires a bearer token (metadata 'authorization: Bearer TOKEN'); "
        "the call had none";
  } else if (!tokens_
                  ->Identify(BearerToken(absl::string_view(it->second.data(), it->second.size())))
                  .has_value()) {
    problem = "the bearer token is not valid";
  }
  if (problem == nullptr) return grpc::Status::OK;
  // No call record exists yet (the call never reaches the service): this is its log line.
  Log(spdlog::level::info, "call refused",
      {{"method", MethodOfPath(path)},
       {"outcome", "UNAUTHENTICATED"},
       {"rejected", RejectReasonName(RejectReason::kUnauthenticated)},
       {"message", problem}});
  if (metrics_ != nullptr) {
    metrics_->CountRejected(RejectReason::kUnauthenticated);
    metrics_->CountCall(MethodOfPath(path), grpc::StatusCode::UNAUTHENTICATED);
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, problem);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportOptions& options, std::shared_ptr<grpc::AuthMetadataProcessor> processor) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key: give both or neither");
  }
  if (!options.tls_client_ca.empty() && options.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca: client certificates need TLS; give --tls_cert and --tls_key too");
  }
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    absl::StatusOr<std::string> cert = ReadSmallFile(options.tls_cert, "--tls_cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadSmallFile(options.tls_key, "--tls_key");
    if (!key.ok()) return key.status();
    pair.cert_chain = *std::move(cert);
    pair.private_key = *std::move(key);
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    if (!options.tls_client_ca.empty()) {
      absl::StatusOr<std::string> ca = ReadSmallFile(options.tls_client_ca, "--tls_client_ca");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *std::move(ca);
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    const bool loopback = IsLoopbackHost(options.host);
    if (!loopback && !options.allow_insecure) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--host=%s is not a loopback address: plaintext is allowed on loopback only; give "
          "--tls_cert and --tls_key, or --allow_insecure to serve plaintext anyway",
          options.host));
    }
    if (processor != nullptr && !loopback) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--token_file: bearer tokens would cross the network in clear text on --host=%s; "
          "give --tls_cert and --tls_key (or listen on a loopback address)",
          options.host));
    }
    if (processor == nullptr) return grpc::InsecureServerCredentials();
    // Plaintext, but through gRPC's local credentials: they accept loopback connections only
    // and, unlike the insecure ones, run the auth metadata processor. On the wire this is the
    // same plaintext HTTP/2 as an insecure server.
    credentials = grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  }
  if (processor != nullptr) credentials->SetAuthMetadataProcessor(std::move(processor));
  return credentials;
}

}  // namespace emfit::server
