#ifndef EMFIT_CLIENT_PROGRESS_H_
#define EMFIT_CLIENT_PROGRESS_H_

#include <cstdio>
#include <string>

#include "emfit/v1/emfit.pb.h"

namespace emfit::client {

enum class ProgressMode {
  kAuto,  // kLine on a terminal, kLog otherwise
  kLine,  // one line rewritten in place
  kLog,   // one line per iteration
  kNone,
};

// Shows a fit's events on `out` (stderr by default) as they arrive; warnings always, the rest
// as `mode` says.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(ProgressMode mode, std::FILE* out = stderr);
  void OnEvent(const v1::FitEvent& event);
  // Ends an in-place line, if one is open.
  void Close();

 private:
  ProgressMode mode_;
  std::FILE* out_;
  bool line_open_ = false;
};

// A fit's outcome and criteria, readable (the family formats the parameters).
std::string FormatSummary(const v1::FitSummary& summary);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_PROGRESS_H_
