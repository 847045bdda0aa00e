#include "connection.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

ABSL_FLAG(std::string, server, "localhost:50051", "emfitd address, HOST:PORT.");
ABSL_FLAG(bool, tls, false,
          "Connect with TLS, verifying the server against the system's CA certificates (or "
          "--tls_ca). Implied by --tls_ca, --tls_cert and --tls_key.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA certificates that the server's certificate must chain to.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate chain, for servers that require mTLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Expect this name in the server's certificate instead of --server's host.");
ABSL_FLAG(std::string, token_file, "",
          "File holding the bearer token to send (first line that is not blank or a # comment; "
          "name:token sends the token). Needs TLS unless the server is on loopback.");
ABSL_FLAG(int, max_message_bytes, emfit::client::ConnectionOptions().max_message_bytes,
          "Largest response message accepted, bytes.");

namespace emfit::client {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("%s: cannot read '%s'", flag, path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The token of a token file: its first line that is not blank or a comment, after "name:".
absl::StatusOr<std::string> ReadToken(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path, "--token_file");
  if (!text.ok()) return text.status();
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (const size_t colon = line.find(':'); colon != absl::string_view::npos) {
      line = line.substr(colon + 1);
    }
    if (line.empty()) break;
    return std::string(line);
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("--token_file: '%s' holds no token (only blank or # lines)", path));
}

}  // namespace

grpc::ChannelArguments ChannelArgumentsFor(const ConnectionOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  // No retries inside gRPC (neither a retry policy nor transparent retries): gRPC 1.51's retry
  // filter can drop, repeat or stall the messages of a client-streaming call that it retries
  // (docs/reliability.md, "Retried uploads"). FitClient sends such calls again itself, whole.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  return args;
}

absl::Status CheckConnectionOptions(const ConnectionOptions& options) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key: give both or neither");
  }
  const bool tls = options.tls || !options.tls_ca.empty() || !options.tls_cert.empty();
  if (!tls && !options.tls_server_name.empty()) {
    return absl::InvalidArgumentError("--tls_server_name: only with TLS (--tls or --tls_ca)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ConnectionOptions& options) {
  if (absl::Status s = CheckConnectionOptions(options); !s.ok()) return s;
  const bool tls = options.tls || !options.tls_ca.empty() || !options.tls_cert.empty();
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      absl::StatusOr<std::string> ca = ReadFile(options.tls_ca, "--tls_ca");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *std::move(ca);
    }
    if (!options.tls_cert.empty()) {
      absl::StatusOr<std::string> cert = ReadFile(options.tls_cert, "--tls_cert");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile(options.tls_key, "--tls_key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(ssl);
  } else if (!options.token_file.empty()) {
    // Plaintext that may carry a token: gRPC's local credentials connect to loopback
    // addresses only (anything else fails to connect), so the token never crosses a network
    // in clear text. On the wire this is the same plaintext HTTP/2.
    credentials = grpc::experimental::LocalCredentials(LOCAL_TCP);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> token = ReadToken(options.token_file);
    if (!token.ok()) return token.status();
    credentials =
        grpc::CompositeChannelCredentials(credentials, grpc::AccessTokenCredentials(*token));
  }
  return grpc::CreateCustomChannel(options.target, credentials, ChannelArgumentsFor(options));
}

ConnectionOptions ConnectionOptionsFromFlags() {
  ConnectionOptions o;
  o.target = absl::GetFlag(FLAGS_server);
  o.tls = absl::GetFlag(FLAGS_tls);
  o.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  o.token_file = absl::GetFlag(FLAGS_token_file);
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  return o;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectFromFlags() {
  return Connect(ConnectionOptionsFromFlags());
}

}  // namespace emfit::client
