#include "csv.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace emfit::client {
bool IsMissing(absl::string_view cell) {
  return cell.empty() || cell == "NA" || cell == "NaN" || cell == "nan" || cell == "na";
}

namespace {

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

std::string DelimiterName(char c) {
  switch (c) {
    case '\t':
      return "tab";
    case ' ':
      return "space";
    default:
      return absl::StrFormat("'%c'", c);
  }
}

// " (the line looks delimited by ';': try --delimiter=';')" when another common delimiter
// appears in `line` and the configured one does not.
std::string DelimiterHint(absl::string_view line, char delimiter) {
  if (line.find(delimiter) != absl::string_view::npos) return "";
  for (char c : {';', '\t', '|', ',', ' '}) {
    if (c != delimiter && line.find(c) != absl::string_view::npos) {
      return absl::StrFormat(" (the line looks delimited by %s: try --delimiter=%s)",
                             DelimiterName(c), c == '\t' ? "tab" : DelimiterName(c));
    }
  }
  return "";
}

// The 0-based index of column `spec` (a header name, or a 1-based index) among `count`.
absl::StatusOr<size_t> Resolve(const std::string& spec, const std::vector<std::string>& names,
                               size_t count) {
  const auto named = std::find(names.begin(), names.end(), spec);
  if (named != names.end()) {
    if (std::find(named + 1, names.end(), spec) != names.end()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "column '%s' appears more than once in the header; name it by its index", spec));
    }
    return static_cast<size_t>(named - names.begin());
  }
  size_t index = 0;
  if (absl::SimpleAtoi(spec, &index) && index >= 1 && index <= count) return index - 1;
  return absl::InvalidArgumentError(absl::StrFormat(
      "column '%s' is neither a name of the header%s nor an index 1..%d", spec,
      names.empty() ? " (the file has none)" : " [" + absl::StrJoin(names, ", ") + "]", count));
}

// Which column of the file feeds each kept numeric column, and each text column.
struct Layout {
  std::vector<size_t> numeric;  // features, then extras
  size_t features = 0;
  std::vector<size_t> text;
};

absl::StatusOr<Layout> Plan(const CsvOptions& o, const std::vector<std::string>& names,
                            size_t count) {
  Layout layout;
  std::vector<bool> taken(count, false);
  auto resolve_all = [&](const std::vector<std::string>& specs,
                         std::vector<size_t>* out) -> absl::Status {
    for (const std::string& spec : specs) {
      absl::StatusOr<size_t> j = Resolve(spec, names, count);
      if (!j.ok()) return j.status();
      out->push_back(*j);
    }
    return absl::OkStatus();
  };
  std::vector<size_t> extra, drop;
  if (absl::Status s = resolve_all(o.text, &layout.text); !s.ok()) return s;
  if (absl::Status s = resolve_all(o.extra, &extra); !s.ok()) return s;
  if (absl::Status s = resolve_all(o.drop, &drop); !s.ok()) return s;
  // A column serves one purpose: a feature, a weight, text, or nothing.
  auto claim = [&](size_t j) -> absl::Status {
    if (taken[j]) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "column %d%s is asked for twice (check --columns, --weights and the family's "
          "columns)",
          j + 1, names.empty() ? "" : " '" + names[j] + "'"));
    }
    taken[j] = true;
    return absl::OkStatus();
  };
  for (size_t j : layout.text) {
    if (absl::Status s = claim(j); !s.ok()) return s;
  }
  for (size_t j : extra) {
    if (absl::Status s = claim(j); !s.ok()) return s;
  }
  if (!o.numeric) return layout;
  if (!o.columns.empty()) {
    if (!o.drop.empty()) {
      return absl::InvalidArgumentError(
          "--drop: not with --columns, which already names every column to use");
    }
    if (absl::Status s = resolve_all(o.columns, &layout.numeric); !s.ok()) return s;
    for (size_t j : layout.numeric) {
      if (absl::Status s = claim(j); !s.ok()) return s;
    }
  } else {
    for (size_t j : drop) taken[j] = true;
    for (size_t j = 0; j < count; ++j) {
      if (!taken[j]) layout.numeric.push_back(j);
    }
  }
  if (layout.numeric.empty()) {
    return absl::InvalidArgumentError("no column is left to fit (check --columns and --drop)");
  }
  if (o.text_features) {
    layout.text.insert(layout.text.end(), layout.numeric.begin(), layout.numeric.end());
    layout.numeric.clear();
  }
  layout.features = layout.numeric.size();
  layout.numeric.insert(layout.numeric.end(), extra.begin(), extra.end());
  return layout;
}

}  // namespace

absl::StatusOr<char> ParseDelimiter(absl::string_view name) {
  if (name.size() == 1) return name[0];
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "tab" || n == "\\t") return '\t';
  if (n == "comma") return ',';
  if (n == "semicolon") return ';';
  if (n == "space") return ' ';
  if (n == "pipe") return '|';
  return absl::InvalidArgumentError(absl::StrFormat(
      "--delimiter: one character, or tab, comma, semicolon, space, pipe; got '%s'", name));
}

absl::StatusOr<Table> ParseCsv(absl::string_view text, const CsvOptions& options) {
  Table table;
  if (absl::StartsWith(text, "\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 byte-order mark
  size_t line_no = 0;
  size_t count = 0;  // cells per line
  bool first = true;
  size_t pos = 0;
  Layout layout;
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
      count = cells.size();
      bool header = options.header == HeaderMode::kYes;
      if (options.header == HeaderMode::kAuto) {
        // A header if a cell is not a number, leaving aside the columns named by index that are
        // text or not used (a headerless file may hold an id there).
        std::vector<bool> aside(count, false);
        for (const auto* specs : {&options.text, &options.drop}) {
          for (const std::string& spec : *specs) {
            size_t index = 0;
            if (absl::SimpleAtoi(spec, &index) && index >= 1 && index <= count) {
              aside[index - 1] = true;
            }
          }
        }
        double v;
        for (size_t j = 0; j < count; ++j) {
          header = header || (!aside[j] && !ParseCell(cells[j], &v));
        }
      }
      std::vector<std::string> names;
      if (header) {
        for (absl::string_view c : cells) names.push_back(Unquote(c));
      }
      absl::StatusOr<Layout> planned = Plan(options, names, count);
      if (!planned.ok()) return planned.status();
      layout = *std::move(planned);
      table.header = header;
      table.features = layout.features;
      table.cols = layout.numeric.size();
      table.text.resize(layout.text.size());
      if (!names.empty()) {
        for (size_t j : layout.numeric) table.column_names.push_back(names[j]);
      }
      for (size_t j : layout.text) {
        table.text_names.push_back(names.empty() ? absl::StrCat("column ", j + 1) : names[j]);
      }
      if (header) continue;
    }
    if (cells.size() != count) {
      return absl::InvalidArgumentError(
          absl::StrFormat("line %d: expected %d cells like the first line, got %d%s", line_no,
                          count, cells.size(), DelimiterHint(line, options.delimiter)));
    }
    for (size_t j : layout.numeric) {
      double v;
      if (!ParseCell(cells[j], &v)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("line %d, column %d: '%s' is not a number%s", line_no, j + 1, cells[j],
                            DelimiterHint(cells[j], options.delimiter)));
      }
      table.values.push_back(v);
    }
    for (size_t c = 0; c < layout.text.size(); ++c) {
      table.text[c].push_back(Unquote(cells[layout.text[c]]));
    }
    ++table.rows;
  }
  if (table.rows == 0) return absl::InvalidArgumentError("no data rows");
  return table;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::FILE* in = stdin;
  if (path != "-") {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrFormat("cannot open '%s': %s", path, std::strerror(errno)));
    }
    if (S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("'%s' is a directory, not a file of data", path));
    }
    in = std::fopen(path.c_str(), "rb");
    if (in == nullptr) {
      return absl::NotFoundError(
          absl::StrFormat("cannot open '%s': %s", path, std::strerror(errno)));
    }
  }
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), in)) > 0) text.append(buffer, n);
  const bool failed = std::ferror(in) != 0;
  if (in != stdin) std::fclose(in);
  if (failed) {
    return absl::UnavailableError(
        absl::StrFormat("cannot read '%s'", path == "-" ? std::string("standard input") : path));
  }
  return text;
}

absl::StatusOr<Table> ReadCsvFile(const std::string& path, const CsvOptions& options) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<Table> table = ParseCsv(*text, options);
  if (!table.ok()) {
    return absl::Status(
        table.status().code(),
        absl::StrFormat("%s: %s", path == "-" ? "standard input" : path, table.status().message()));
  }
  return table;
}

}  // namespace emfit::client
