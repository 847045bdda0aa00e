// Transport security and bearer tokens, attacked over loopback: missing and wrong tokens, a
// changed token file, plaintext against TLS, client certificates of another CA, and the
// refusal to serve plaintext (or tokens in clear text) on a network address.
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "auth.h"
#include "connection.h"
#include "fit_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "health.h"
#include "server.h"
#include "testing/fit_requests.h"
#include "testing/status_matchers.h"

namespace emfit::server {
namespace {

using ::emfit::client::CheckHealth;
using ::emfit::client::ConnectionOptions;
using ::emfit::client::FitClient;
using ::emfit::testing::Faithful;
using ::emfit::testing::GmmHeader;
using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;
using ::emfit::testing::Values;

// Writes `text` to `path` atomically (a reader sees the old or the new file, never half).
void WriteFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << text;
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

class SecurityTest : public ::testing::Test {
 protected:
  // Certificates for the whole suite (see tests/testing/make_test_certs.sh).
  static void SetUpTestSuite() {
    std::string pattern = ::testing::TempDir() + "emfit-security-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = new std::string(pattern);
    const std::string command = absl::StrFormat("sh '%s' '%s'", EMFIT_MAKE_TEST_CERTS, *dir_);
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string Path(const std::string& name) { return *dir_ + "/" + name; }

  static ServerOptions Options() {
    ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.workers = 1;
    o.compute_threads = 1;
    o.drain_delay = absl::ZeroDuration();
    o.shutdown_grace = absl::Seconds(1);
    o.token_poll = absl::Milliseconds(10);
    return o;
  }
  void Start(const ServerOptions& options) {
    server_ = std::make_unique<Server>();
    ASSERT_THAT(server_->Start(options), IsOk());
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // A connection to the server without retries (refusals come back at once).
  ConnectionOptions Client() const {
    ConnectionOptions c;
    c.target = absl::StrFormat("127.0.0.1:%d", server_->port());
    return c;
  }
  // A fit of Old Faithful through `connection`.
  absl::Status Fit(const ConnectionOptions& connection) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(connection);
    if (!channel.ok()) return channel.status();
    const RowMatrix x = Faithful();
    return FitClient(*channel).Fit(GmmHeader(x, 2), Values(x)).status();
  }
  std::string TokenFile(const std::string& name, const std::string& text) {
    const std::string path = Path(name);
    WriteFile(path, text);
    return path;
  }

  static std::string* dir_;
  std::unique_ptr<Server> server_;
};

std::string* SecurityTest::dir_ = nullptr;

TEST(IsLoopbackHost, KnowsLoopbackNamesAndAddresses) {
  for (const char* host : {"localhost", "127.0.0.1", "127.3.2.1", "::1", "[::1]"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "[::]", "10.0.0.1", "example.com", ""}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST_F(SecurityTest, CallsWithoutAValidTokenAreUnauthenticatedButHealthIsOpen) {
  ServerOptions options = Options();
  options.token_file = TokenFile("tokens", "# who may fit\nalice:s3cret\n\nbob:hunter2\n");
  Start(options);
  ConnectionOptions anonymous = Client();
  EXPECT_THAT(Fit(anonymous), StatusIs(absl::StatusCode::kUnauthenticated, "bearer token"));
  ConnectionOptions wrong = Client();
  wrong.token_file = TokenFile("wrong", "alice:guess\n");
  EXPECT_THAT(Fit(wrong), StatusIs(absl::StatusCode::kUnauthenticated, "not valid"));
  ConnectionOptions alice = Client();
  alice.token_file = TokenFile("alice", "s3cret\n");
  EXPECT_THAT(Fit(alice), IsOk());
  // Probes carry no token.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::Connect(anonymous);
  ASSERT_THAT(channel, IsOk());
  EXPECT_THAT(CheckHealth(*channel, kHealthServiceName, absl::Seconds(10)), IsOk());
}

TEST_F(SecurityTest, AChangedTokenFileTakesEffect) {
  ServerOptions options = Options();
  options.token_file = TokenFile("tokens", "alice:old-token\n");
  Start(options);
  ConnectionOptions old_token = Client();
  old_token.token_file = TokenFile("old", "old-token\n");
  ConnectionOptions new_token = Client();
  new_token.token_file = TokenFile("new", "new-token\n");
  EXPECT_THAT(Fit(old_token), IsOk());
  EXPECT_THAT(Fit(new_token), StatusIs(absl::StatusCode::kUnauthenticated, "not valid"));

  // The file changes: the poll notices.
  const uint64_t before = server_->tokens()->generation();
  WriteFile(options.token_file, "alice:new-token\n");
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (server_->tokens()->generation() == before && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GT(server_->tokens()->generation(), before);
  EXPECT_THAT(Fit(old_token), StatusIs(absl::StatusCode::kUnauthenticated, "not valid"));
  EXPECT_THAT(Fit(new_token), IsOk());

  // An explicit reload (SIGHUP) takes effect at once; a broken file keeps the tokens in force.
  WriteFile(options.token_file, "alice:old-token\n");
  ASSERT_THAT(server_->ReloadTokens(), IsOk());
  EXPECT_THAT(Fit(old_token), IsOk());
  WriteFile(options.token_file, "not a name:token\n");
  EXPECT_THAT(server_->ReloadTokens(), StatusIs(absl::StatusCode::kInvalidArgument, "line 1"));
  EXPECT_THAT(Fit(old_token), IsOk());
}

TEST_F(SecurityTest, AMalformedTokenFileIsRefusedNamingTheLine) {
  ServerOptions options = Options();
  options.token_file = TokenFile("bad", "alice:one\nbob:two three\n");
  Server server;
  EXPECT_THAT(server.Start(options), StatusIs(absl::StatusCode::kInvalidArgument, "line 2"));
  options.token_file = Path("missing");
  EXPECT_THAT(server.Start(options), StatusIs(absl::StatusCode::kInvalidArgument, "--token_file"));
}

TEST_F(SecurityTest, TlsServesClientsThatTrustItsCaAndRefusesPlaintextCleanly) {
  ServerOptions options = Options();
  options.tls_cert = Path("server.pem");
  options.tls_key = Path("server.key");
  Start(options);
  EXPECT_THAT(Fit(Client()), StatusIs(absl::StatusCode::kUnavailable, ""));
  ConnectionOptions untrusting = Client();
  untrusting.tls_ca = Path("other-ca.pem");
  EXPECT_THAT(Fit(untrusting), StatusIs(absl::StatusCode::kUnavailable, ""));
  ConnectionOptions tls = Client();
  tls.tls_ca = Path("ca.pem");
  EXPECT_THAT(Fit(tls), IsOk());
  tls.target = absl::StrFormat("localhost:%d", server_->port());  // the certificate's DNS name
  EXPECT_THAT(Fit(tls), IsOk());
}

TEST_F(SecurityTest, MtlsRefusesClientsWithoutACertificateOrWithOneOfAnotherCa) {
  ServerOptions options = Options();
  options.tls_cert = Path("server.pem");
  options.tls_key = Path("server.key");
  options.tls_client_ca = Path("ca.pem");
  Start(options);
  ConnectionOptions no_cert = Client();
  no_cert.tls_ca = Path("ca.pem");
  EXPECT_THAT(Fit(no_cert), StatusIs(absl::StatusCode::kUnavailable, ""));
  ConnectionOptions foreign = no_cert;
  foreign.tls_cert = Path("other-client.pem");
  foreign.tls_key = Path("other-client.key");
  EXPECT_THAT(Fit(foreign), StatusIs(absl::StatusCode::kUnavailable, ""));
  ConnectionOptions alice = no_cert;
  alice.tls_cert = Path("client.pem");
  alice.tls_key = Path("client.key");
  EXPECT_THAT(Fit(alice), IsOk());
}

TEST_F(SecurityTest, TokensAreCheckedOverTlsToo) {
  ServerOptions options = Options();
  options.tls_cert = Path("server.pem");
  options.tls_key = Path("server.key");
  options.token_file = TokenFile("tokens", "alice:s3cret\n");
  Start(options);
  ConnectionOptions tls = Client();
  tls.tls_ca = Path("ca.pem");
  EXPECT_THAT(Fit(tls), StatusIs(absl::StatusCode::kUnauthenticated, "bearer token"));
  tls.token_file = TokenFile("alice", "alice:s3cret\n");  // the server's format works too
  EXPECT_THAT(Fit(tls), IsOk());
}

TEST_F(SecurityTest, PlaintextOnANetworkAddressNeedsAllowInsecureAndNeverCarriesTokens) {
  ServerOptions options = Options();
  options.host = "0.0.0.0";
  Server server;
  EXPECT_THAT(server.Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "--allow_insecure"));
  options.allow_insecure = true;
  options.token_file = TokenFile("tokens", "alice:s3cret\n");
  EXPECT_THAT(server.Start(options), StatusIs(absl::StatusCode::kInvalidArgument, "clear text"));
  options = Options();
  options.tls_cert = Path("server.pem");
  EXPECT_THAT(server.Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls_cert and --tls_key"));
}

}  // namespace
}  // namespace emfit::server
