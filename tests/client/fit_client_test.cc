// FitClient's re-sends (fit_client.h): a call lost in transit is sent again, whole; an answer,
// even an error, is not. Against real servers over loopback: one stops mid-fit, and another
// takes its port, as a replica behind a balancer would take over.
#include "fit_client.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "connection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server.h"
#include "testing/fit_requests.h"
#include "testing/status_matchers.h"

namespace emfit::client {
namespace {

using ::emfit::server::Server;
using ::emfit::server::ServerOptions;
using ::emfit::testing::Faithful;
using ::emfit::testing::GmmHeader;
using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;
using ::emfit::testing::Values;

ServerOptions Options(int port) {
  ServerOptions o;
  o.port = port;
  o.workers = 1;
  o.compute_threads = 1;
  o.drain_delay = absl::ZeroDuration();
  o.shutdown_grace = absl::ZeroDuration();  // running calls end at once: UNAVAILABLE
  return o;
}

// A channel that reconnects quickly once its server is back (gRPC waits 1 s by default).
std::shared_ptr<grpc::Channel> QuickChannel(int port) {
  ConnectionOptions options;
  grpc::ChannelArguments args = ChannelArgumentsFor(options);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(absl::StrFormat("127.0.0.1:%d", port),
                                   grpc::InsecureChannelCredentials(), args);
}

TEST(ChannelArgumentsFor, TurnGrpcsOwnRetriesOff) {
  // gRPC 1.51's retry filter loses chunks of the uploads it retries (docs/reliability.md,
  // "Retried uploads"): every channel the client makes has retries off, FitClient re-sends.
  const grpc::ChannelArguments args = ChannelArgumentsFor(ConnectionOptions());
  const grpc_channel_args c = args.c_channel_args();
  int found = 0;
  for (size_t i = 0; i < c.num_args; ++i) {
    if (std::string(c.args[i].key) == GRPC_ARG_ENABLE_RETRIES) {
      ++found;
      EXPECT_EQ(c.args[i].type, GRPC_ARG_INTEGER);
      EXPECT_EQ(c.args[i].value.integer, 0);
    }
  }
  EXPECT_EQ(found, 1);
}

TEST(LostInTransit, IsUnavailableOrAStreamResetButNoAnswer) {
  EXPECT_TRUE(LostInTransit(absl::UnavailableError("Socket closed")));
  EXPECT_TRUE(LostInTransit(absl::InternalError("Received RST_STREAM with error code 2")));
  EXPECT_FALSE(LostInTransit(absl::InternalError("the server ended the call without a result")));
  EXPECT_FALSE(LostInTransit(absl::InvalidArgumentError("spec.gmm.k")));
  EXPECT_FALSE(LostInTransit(absl::ResourceExhaustedError("the job queue is full")));
  EXPECT_FALSE(LostInTransit(absl::DeadlineExceededError("Deadline Exceeded")));
}

TEST(FitClient, AFitItsServerLostMidRunIsSentAgainToTheServerThatTookOver) {
  auto first = std::make_unique<Server>();
  ASSERT_THAT(first->Start(Options(0)), IsOk());
  const int port = first->port();
  // A fit of a few seconds, the same on both servers.
  const testing::LongFit long_fit;
  v1::FitHeader header = long_fit.header;
  header.mutable_options()->set_max_iter(100);
  FitClient client(QuickChannel(port), /*resends=*/4);

  absl::Notification iterating;
  std::unique_ptr<Server> second;
  std::vector<int> accepted;  // events of each attempt, in order
  std::vector<std::string> lost;
  CallOptions call;
  call.timeout = absl::Seconds(120);
  call.on_resend = [&](const absl::Status& status, int attempt) {
    lost.push_back(absl::StrFormat("attempt %d after %s", attempt, status.ToString()));
    // The replacement listens on the same port before the call is sent again.
    if (second == nullptr) {
      second = std::make_unique<Server>();
      ASSERT_THAT(second->Start(Options(port)), IsOk());
    }
  };
  std::thread stopper([&] {
    iterating.WaitForNotification();
    first->Shutdown();  // grace 0: the running fit's call ends with UNAVAILABLE
  });
  absl::StatusOr<v1::FitResult> result = client.Fit(
      header, Values(long_fit.x),
      [&](const v1::FitEvent& e) {
        if (e.has_accepted()) accepted.push_back(e.accepted().queue_position());
        if (e.has_iteration() && !iterating.HasBeenNotified()) iterating.Notify();
      },
      call);
  stopper.join();
  ASSERT_THAT(result, IsOk());
  ASSERT_FALSE(lost.empty());
  EXPECT_THAT(lost.front(), ::testing::HasSubstr("attempt 2 after UNAVAILABLE: the server is "
                                                 "shutting down"));
  EXPECT_GE(accepted.size(), 2u);  // accepted by both servers: the events started over
  EXPECT_EQ(result->summary().iterations(), 100u);
  // The result is the whole fit, as one server alone computes it.
  FitClient direct(QuickChannel(port), 0);
  absl::StatusOr<v1::FitResult> reference = direct.Fit(header, Values(long_fit.x));
  ASSERT_THAT(reference, IsOk());
  EXPECT_EQ(result->model().SerializeAsString(), reference->model().SerializeAsString());
  second->Shutdown();
}

TEST(FitClient, AnAnswerIsNeverSentAgainNorIsACallWithTheCallersContext) {
  Server server;
  ASSERT_THAT(server.Start(Options(0)), IsOk());
  int resends = 0;
  CallOptions call;
  call.on_resend = [&](const absl::Status&, int) { ++resends; };
  FitClient client(QuickChannel(server.port()), 4);
  const RowMatrix x = Faithful();
  EXPECT_THAT(client.Fit(GmmHeader(x, 0), Values(x), nullptr, call),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.gmm.k"));
  EXPECT_EQ(resends, 0);
  // Lost in transit (nothing listens any more), but the caller owns the context.
  const int port = server.port();
  server.Shutdown();
  FitClient lost(QuickChannel(port), 4);
  grpc::ClientContext context;
  call.context = &context;
  EXPECT_THAT(lost.Fit(GmmHeader(x, 2), Values(x), nullptr, call),
              StatusIs(absl::StatusCode::kUnavailable, ""));
  EXPECT_EQ(resends, 0);
  // Without it, the call is sent again, `resends` times.
  call.context = nullptr;
  EXPECT_THAT(lost.Fit(GmmHeader(x, 2), Values(x), nullptr, call),
              StatusIs(absl::StatusCode::kUnavailable, ""));
  EXPECT_EQ(resends, 4);
}

}  // namespace
}  // namespace emfit::client
