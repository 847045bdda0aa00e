#include "health.h"

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/time/clock.h"
#include "connection.h"
#include "health_check/health.grpc.pb.h"

ABSL_FLAG(std::string, service, "emfit.v1.EmFitService",
          "health: the service whose status to check (\"\" for the whole server).");

namespace emfit::client {

absl::StatusOr<std::string> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                        const std::string& service, absl::Duration timeout) {
  std::unique_ptr<grpc::health::v1::Health::Stub> stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  // The health service answers NOT_FOUND for a service it does not know.
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return std::string("SERVICE_UNKNOWN");
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

int RunHealthCommand(absl::Duration timeout) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectFromFlags();
  if (!channel.ok()) {
    std::fprintf(stderr, "emfit: %s\n", std::string(channel.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<std::string> status =
      CheckHealth(*channel, absl::GetFlag(FLAGS_service),
                  timeout == absl::InfiniteDuration() ? absl::Seconds(10) : timeout);
  if (!status.ok()) {
    std::fprintf(stderr, "emfit: %s: %s\n",
                 absl::StatusCodeToString(status.status().code()).c_str(),
                 std::string(status.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", status->c_str());
  return *status == "SERVING" ? 0 : 1;
}

}  // namespace emfit::client
