#ifndef EMFIT_CLIENT_CSV_H_
#define EMFIT_CLIENT_CSV_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace emfit::client {

// A table read from CSV: numeric columns row-major, and text columns apart.
struct Table {
  // Names of the numeric columns kept, in order (from the header; empty without one): the
  // selected columns first, then the `extra` ones (CsvOptions).
  std::vector<std::string> column_names;
  std::vector<double> values;  // rows * cols, row-major; missing cells are NaN
  size_t rows = 0;
  size_t cols = 0;      // numeric columns kept
  size_t features = 0;  // of which the selected ones (the first `features` columns)
  // Columns kept as text (CsvOptions::text), in the order asked: their names and cells.
  std::vector<std::string> text_names;
  std::vector<std::vector<std::string>> text;  // text[c][row]
  bool header = false;                         // the first line named the columns
};

enum class HeaderMode { kAuto, kYes, kNo };

struct CsvOptions {
  char delimiter = ',';
  // kAuto: the first line is a header if any of its cells (other than text columns given by
  // index) is not a number (or a missing-value marker).
  HeaderMode header = HeaderMode::kAuto;
  // Columns to keep as features, in this order, each a header name or a 1-based index; empty:
  // every column except `drop`, `extra` and `text` ones.
  std::vector<std::string> columns;
  std::vector<std::string> drop;
  // Numeric columns kept after the features (e.g. row weights), and columns kept as text (e.g.
  // sequence ids, symbols): names or 1-based indices.
  std::vector<std::string> extra;
  std::vector<std::string> text;
  // false: only the `text` columns are read (e.g. a table of tip labels and states); the other
  // columns are ignored, whatever they hold.
  bool numeric = true;
  // Keep the feature columns as text too, after the `text` ones (e.g. the symbols of a
  // categorical model): the table then has no numeric feature (Table::features == 0).
  bool text_features = false;
};

// Whether a cell is a missing-value marker: empty, "NA", "na", "NaN" or "nan" (numbers and text
// cells alike, e.g. an HMM's symbols).
bool IsMissing(absl::string_view cell);

// The delimiter a flag names: one character, or "tab", "comma", "semicolon", "space", "pipe".
absl::StatusOr<char> ParseDelimiter(absl::string_view name);

// Parses CSV text: numbers in C locale (std::from_chars), empty, "NA", "NaN" or "nan" cells
// are missing (NaN). Lines ending in \r\n are accepted, blank lines skipped. Errors name the
// line and column (1-based) and, when a line looks delimited by another character, the
// --delimiter to try; a column asked for that does not exist names the header's columns.
absl::StatusOr<Table> ParseCsv(absl::string_view text, const CsvOptions& options = {});
// Reads `path` ("-": standard input; named pipes work) and parses it. A directory or an
// unreadable file is an error naming the path.
absl::StatusOr<Table> ReadCsvFile(const std::string& path, const CsvOptions& options = {});
// The whole of `path` ("-": standard input), read in chunks (pipes have no size).
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace emfit::client

#endif  // EMFIT_CLIENT_CSV_H_
