// The gRPC health check (grpc.health.v1) of emfitd, and the `emfit health` command built on it
// (for container HEALTHCHECKs and Kubernetes probes).
#ifndef EMFIT_CLIENT_HEALTH_H_
#define EMFIT_CLIENT_HEALTH_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace emfit::client {

// The serving status of `service` ("" for the whole server) as the health service names it:
// "SERVING", "NOT_SERVING" (e.g. while draining), "SERVICE_UNKNOWN" or "UNKNOWN". Errors are
// the call's (UNAVAILABLE when nothing answers, DEADLINE_EXCEEDED after `timeout`).
absl::StatusOr<std::string> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                        const std::string& service, absl::Duration timeout);

// `emfit health [--server] [--service=emfit.v1.EmFitService]`, connecting with the connection
// flags: prints the status and returns 0 only when it is SERVING (1 otherwise, 2 on a usage
// error). `timeout` bounds the check (infinite: 10 s).
int RunHealthCommand(absl::Duration timeout);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_HEALTH_H_
