#include "out_file.h"

#include <stdlib.h>  // mkstemp
#include <unistd.h>  // close

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace emfit::client {

OutFile::OutFile(absl::string_view flag, const std::string& path) : flag_(flag), path_(path) {
  if (path.empty() || path == "-") {
    out_ = stdout;
    return;
  }
  temporary_ = path + ".partial-XXXXXX";
  const int fd = mkstemp(temporary_.data());
  made_ = fd >= 0;
  out_ = made_ ? fdopen(fd, "w") : nullptr;
  if (out_ == nullptr) {
    error_ = std::strerror(errno);
    if (made_) close(fd);
  }
}

OutFile::~OutFile() {
  if (out_ != nullptr && out_ != stdout) std::fclose(out_);
  if (made_ && !committed_) std::remove(temporary_.c_str());
}

absl::Status OutFile::Error() const {
  return absl::FailedPreconditionError(absl::StrFormat("%s: cannot write '%s'%s", flag_, path_,
                                                       error_.empty() ? "" : ": " + error_));
}

void OutFile::Write(absl::string_view text) {
  if (ok() && std::fwrite(text.data(), 1, text.size(), out_) != text.size()) Fail();
}

bool OutFile::Commit() {
  if (!ok()) return false;
  if (to_stdout()) return std::fflush(out_) == 0 || Fail();
  const bool closed = std::fclose(out_) == 0;
  out_ = nullptr;
  if (!closed || std::rename(temporary_.c_str(), path_.c_str()) != 0) return Fail();
  committed_ = true;
  return true;
}

bool OutFile::Fail() {
  if (error_.empty()) error_ = std::strerror(errno);
  return false;
}

absl::Status WriteOutFile(absl::string_view flag, const std::string& path, absl::string_view text) {
  OutFile out(flag, path);
  out.Write(text);
  if (!out.Commit()) return out.Error();
  return absl::OkStatus();
}

}  // namespace emfit::client
