// The channel to emfitd, built from one set of options (or the CLI's flags): target, TLS and
// mTLS, a bearer token and the largest message accepted. Every CLI command
// and FitClient user connects through here.
#ifndef EMFIT_CLIENT_CONNECTION_H_
#define EMFIT_CLIENT_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"

// Defined in connection.cc with the other connection flags; main.cc reads it for messages.
ABSL_DECLARE_FLAG(std::string, server);

namespace emfit::client {

struct ConnectionOptions {
  // "host:port" (or any gRPC target: "dns:///host:port", "ipv4:...", "unix:...").
  std::string target = "localhost:50051";
  // TLS: verify the server against `tls_ca` (PEM file; empty: the system's roots); present
  // `tls_cert` and `tls_key` for mTLS; check the server's certificate for `tls_server_name`
  // instead of the target's host. TLS is on when `tls` or any of the files is set.
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // A file holding the bearer token, sent with every call as "authorization: Bearer TOKEN":
  // its first line that is not blank or a # comment (name:token lines, as in the server's
  // token file, send the token part). Sent over TLS, or in plaintext to a loopback server
  // only (gRPC's local credentials refuse any other connection).
  std::string token_file;
  // Largest response message accepted.
  int max_message_bytes = 64 << 20;
};

// The channel arguments of `options` (message size, TLS name), with gRPC's retries off.
grpc::ChannelArguments ChannelArgumentsFor(const ConnectionOptions& options);

// The checks of `options` that need no file: INVALID_ARGUMENT naming the flag (the CLI's usage
// errors).
absl::Status CheckConnectionOptions(const ConnectionOptions& options);

// A channel to `options.target`. Errors: inconsistent options (CheckConnectionOptions, a token
// over plaintext to another machine, ...) and unreadable files (NOT_FOUND), each naming the
// flag.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ConnectionOptions& options);

// The options given by the CLI's flags (--server, --tls, --tls_ca, --tls_cert, --tls_key,
// --tls_server_name, --token_file, --max_message_bytes), and the channel they make. (--retries
// is FitClient's, fit_client.h.)
ConnectionOptions ConnectionOptionsFromFlags();
absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectFromFlags();

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_CONNECTION_H_
