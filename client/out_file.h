// Where the CLI writes an output file (--out, --summary_out): standard output for "" or "-"; a
// file is written under a temporary name next to it and renamed by Commit(), so that a failed
// call never leaves a truncated file where a good one was (the temporary goes if not committed).
#ifndef EMFIT_CLIENT_OUT_FILE_H_
#define EMFIT_CLIENT_OUT_FILE_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace emfit::client {

// Not thread-safe; one writer.
class OutFile {
 public:
  // `flag` names the flag that gave `path` in errors (e.g. "--out").
  OutFile(absl::string_view flag, const std::string& path);
  ~OutFile();
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  bool to_stdout() const { return temporary_.empty(); }
  // "standard output" or the path, for messages.
  std::string name() const { return to_stdout() ? "standard output" : path_; }
  // False once opening or a write failed.
  bool ok() const { return out_ != nullptr && error_.empty(); }
  // The error of a file that cannot be opened, written or renamed (FAILED_PRECONDITION), naming
  // the flag, the path and the reason.
  absl::Status Error() const;
  // Appends `text`; a failure is kept for ok() and Error().
  void Write(absl::string_view text);
  // Flushes (standard output) or closes and renames the file to its name; false if anything
  // failed.
  bool Commit();

 private:
  bool Fail();

  std::string flag_, path_, temporary_, error_;
  std::FILE* out_ = nullptr;
  bool made_ = false;  // the temporary file exists
  bool committed_ = false;
};

// Writes `text` whole to `path` (of the flag `flag`; "" or "-": standard output) through an
// OutFile: the file is either the whole text or left as it was.
absl::Status WriteOutFile(absl::string_view flag, const std::string& path, absl::string_view text);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_OUT_FILE_H_
