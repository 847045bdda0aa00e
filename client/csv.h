#ifndef EMFIT_CLIENT_CSV_H_
#define EMFIT_CLIENT_CSV_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace emfit::client {

// A numeric table read from CSV, row-major.
struct Table {
  std::vector<std::string> column_names;  // from the header line, or empty
  std::vector<double> values;             // rows * cols, row-major; missing cells are NaN
  size_t rows = 0;
  size_t cols = 0;
};

enum class HeaderMode { kAuto, kYes, kNo };

struct CsvOptions {
  char delimiter = ',';
  // kAuto: the first line is a header if any of its cells is not a number (or a missing-value
  // marker).
  HeaderMode header = HeaderMode::kAuto;
};

// Parses CSV text: numbers in C locale (std::from_chars), empty, "NA", "NaN" or "nan" cells
// are missing (NaN). Lines ending in \r\n are accepted, blank lines skipped. Errors name the
// line and column.
absl::StatusOr<Table> ParseCsv(absl::string_view text, const CsvOptions& options = {});
absl::StatusOr<Table> ReadCsvFile(const std::string& path, const CsvOptions& options = {});

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_CSV_H_
