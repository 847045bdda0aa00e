#include "csv.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace emfit::client {
namespace {

bool IsMissing(absl::string_view cell) {
  return cell.empty() || cell == "NA" || cell == "NaN" || cell == "nan" || cell == "na";
}

// Parses one cell (optionally in double quotes); false if it is not a number or a missing
// marker. The common case, a plain number, is one from_chars call.
bool ParseCell(absl::string_view cell, double* out) {
  if (!cell.empty() && cell.front() != ' ' && cell.front() != '+' && cell.front() != '"') {
    const char* end = cell.data() + cell.size();
    auto [ptr, ec] = std::from_chars(cell.data(), end, *out);
    if (ec == std::errc() && ptr == end) return true;
  }
  cell = absl::StripAsciiWhitespace(cell);
  if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"') {
    cell = absl::StripAsciiWhitespace(cell.substr(1, cell.size() - 2));
  }
  if (IsMissing(cell)) {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (!cell.empty() && cell.front() == '+') cell.remove_prefix(1);
  const char* end = cell.data() + cell.size();
  auto [ptr, ec] = std::from_chars(cell.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

// Splits `line` at `delimiter` into `cells` (reusing its storage).
void SplitCells(absl::string_view line, char delimiter, std::vector<absl::string_view>* cells) {
  cells->clear();
  size_t start = 0;
  for (;;) {
    const size_t next = line.find(delimiter, start);
    if (next == absl::string_view::npos) {
      cells->push_back(line.substr(start));
      return;
    }
    cells->push_back(line.substr(start, next - start));
    start = next + 1;
  }
}

std::string Unquote(absl::string_view cell) {
  cell = absl::StripAsciiWhitespace(cell);
  if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"') {
    cell = cell.substr(1, cell.size() - 2);
  }
  return std::string(cell);
}

}  // namespace

absl::StatusOr<Table> ParseCsv(absl::string_view text, const CsvOptions& options) {
  Table table;
  if (absl::StartsWith(text, "\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 byte-order mark
  size_t line_no = 0;
  bool first = true;
  size_t pos = 0;
  std::vector<absl::string_view> cells;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == absl::string_view::npos) eol = text.size();
    absl::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    SplitCells(line, options.delimiter, &cells);
    if (first) {
      first = false;
      table.cols = cells.size();
      bool header = options.header == HeaderMode::kYes;
      if (options.header == HeaderMode::kAuto) {
        double v;
        for (absl::string_view c : cells) header = header || !ParseCell(c, &v);
      }
      if (header) {
        for (absl::string_view c : cells) table.column_names.push_back(Unquote(c));
        continue;
      }
    }
    if (cells.size() != table.cols) {
      return absl::InvalidArgumentError(
          absl::StrFormat("line %d: expected %d cells like the first line, got %d", line_no,
                          table.cols, cells.size()));
    }
    for (size_t j = 0; j < cells.size(); ++j) {
      double v;
      if (!ParseCell(cells[j], &v)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("line %d, column %d: '%s' is not a number", line_no, j + 1, cells[j]));
      }
      table.values.push_back(v);
    }
    ++table.rows;
  }
  if (table.rows == 0) return absl::InvalidArgumentError("no data rows");
  return table;
}

absl::StatusOr<Table> ReadCsvFile(const std::string& path, const CsvOptions& options) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot open '%s'", path));
  std::string text(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (!in) return absl::UnavailableError(absl::StrFormat("cannot read '%s'", path));
  absl::StatusOr<Table> table = ParseCsv(text, options);
  if (!table.ok()) {
    return absl::Status(table.status().code(),
                        absl::StrFormat("%s: %s", path, table.status().message()));
  }
  return table;
}

}  // namespace emfit::client
