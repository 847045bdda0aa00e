#include "progress.h"

#include <unistd.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace emfit::client {

ProgressPrinter::ProgressPrinter(ProgressMode mode, std::FILE* out) : mode_(mode), out_(out) {
  if (mode_ == ProgressMode::kAuto) {
    mode_ = isatty(fileno(out_)) ? ProgressMode::kLine : ProgressMode::kLog;
  }
}

void ProgressPrinter::OnEvent(const v1::FitEvent& event) {
  if (mode_ == ProgressMode::kNone) return;
  switch (event.kind_case()) {
    case v1::FitEvent::kAccepted:
      std::fprintf(out_, "accepted as %s (queue position %u)\n", event.accepted().job_id().c_str(),
                   event.accepted().queue_position());
      break;
    case v1::FitEvent::kIteration: {
      const v1::Iteration& it = event.iteration();
      const std::string change = std::isnan(it.change()) ? std::string("         -")
                                                         : absl::StrFormat("%+10.3e", it.change());
      const std::string text =
          absl::StrFormat("restart %u  iter %4u  log-likelihood %.6f  change/row %s  %.3fs%s",
                          it.restart(), it.iteration(), it.log_likelihood(), change,
                          it.elapsed_seconds(), it.accelerated() ? "  (accelerated)" : "");
      if (mode_ == ProgressMode::kLine) {
        std::fprintf(out_, "\r%s\x1b[K", text.c_str());
        line_open_ = true;
      } else {
        std::fprintf(out_, "%s\n", text.c_str());
      }
      break;
    }
    case v1::FitEvent::kWarning:
      Close();
      std::fprintf(out_, "warning [%s]: %s\n", event.warning().code().c_str(),
                   event.warning().message().c_str());
      break;
    case v1::FitEvent::kResult:
      Close();
      break;
    default:
      break;
  }
  std::fflush(out_);
}

void ProgressPrinter::Close() {
  if (line_open_) std::fprintf(out_, "\n");
  line_open_ = false;
}

namespace {

std::string Row(const v1::Matrix& m, uint32_t r) {
  std::string s;
  for (uint32_t j = 0; j < m.cols(); ++j) {
    absl::StrAppend(&s, absl::StrFormat("%12.6g", m.values(r * m.cols() + j)));
  }
  return s;
}

}  // namespace

std::string FormatResult(const v1::FitResult& result,
                         const google::protobuf::RepeatedPtrField<std::string>& column_names) {
  const v1::FitSummary& s = result.summary();
  std::string out = absl::StrFormat(
      "%s after %u iterations (%s)\n"
      "log-likelihood %.6f (%.6f per row)  BIC %.4f  AIC %.4f  free parameters %u\n"
      "rows used %u, skipped %u; best of %d restarts: #%u; %.3f s\n",
      v1::TerminationReason_Name(s.reason()), s.iterations(), s.message(), s.log_likelihood(),
      s.mean_log_likelihood(), s.bic(), s.aic(), s.num_free_parameters(), s.rows_used(),
      s.rows_skipped(), s.restarts_size(), s.best_restart(), s.elapsed_seconds());
  if (result.model().has_gmm()) {
    const v1::GaussianMixture& g = result.model().gmm();
    const uint32_t k = g.means().rows();
    const uint32_t d = g.means().cols();
    absl::StrAppend(&out, absl::StrFormat("Gaussian mixture, k=%u, covariance %s\n", k,
                                          v1::CovarianceType_Name(g.covariance_type())));
    std::string header = "          ";
    for (uint32_t j = 0; j < d; ++j) {
      const std::string name = j < static_cast<uint32_t>(column_names.size())
                                   ? column_names[j]
                                   : absl::StrCat("x", j + 1);
      absl::StrAppend(&header, absl::StrFormat("%12s", name.substr(0, 11)));
    }
    for (uint32_t c = 0; c < k; ++c) {
      absl::StrAppend(&out, absl::StrFormat("component %u: weight %.6f\n", c, g.weights(c)));
      absl::StrAppend(&out, header, "\n  mean    ", Row(g.means(), c), "\n");
      const v1::Matrix& cov = g.covariances();
      switch (g.covariance_type()) {
        case v1::COVARIANCE_TYPE_FULL:
          for (uint32_t r = 0; r < d; ++r) {
            absl::StrAppend(&out, r == 0 ? "  cov     " : "          ", Row(cov, c * d + r), "\n");
          }
          break;
        case v1::COVARIANCE_TYPE_DIAG:
          absl::StrAppend(&out, "  var     ", Row(cov, c), "\n");
          break;
        case v1::COVARIANCE_TYPE_SPHERICAL:
          absl::StrAppend(&out, absl::StrFormat("  var     %12.6g\n", cov.values(c)));
          break;
        default:
          break;
      }
    }
    if (g.covariance_type() == v1::COVARIANCE_TYPE_TIED) {
      absl::StrAppend(&out, "shared covariance\n");
      for (uint32_t r = 0; r < d; ++r)
        absl::StrAppend(&out, "          ", Row(g.covariances(), r), "\n");
    }
  }
  return out;
}

}  // namespace emfit::client
