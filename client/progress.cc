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
  // Warnings are shown whatever the mode: a fit that did not converge must be visible.
  if (mode_ == ProgressMode::kNone && !event.has_warning()) return;
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

std::string FormatSummary(const v1::FitSummary& s) {
  return absl::StrFormat(
      "%s after %u iterations (%s)\n"
      "log-likelihood %.6f (%.6f per row)  BIC %.4f  AIC %.4f  free parameters %u\n"
      "rows used %u, skipped %u; best of %d restarts: #%u; %.3f s\n",
      v1::TerminationReason_Name(s.reason()), s.iterations(), s.message(), s.log_likelihood(),
      s.mean_log_likelihood(), s.bic(), s.aic(), s.num_free_parameters(), s.rows_used(),
      s.rows_skipped(), s.restarts_size(), s.best_restart(), s.elapsed_seconds());
}

}  // namespace emfit::client
