// Fuzzes the CLI's CSV reader (client/csv.h) with every combination of its options: any text
// is a table or an error, never a crash, and a table is consistent (every row has every
// column). The first two bytes pick the options; the rest is the text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "csv.h"
#include "fuzz_require.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emfit;
  using fuzz::Require;
  if (size < 2) return 0;
  const uint8_t a = data[0];
  const uint8_t b = data[1];
  client::CsvOptions options;
  static constexpr char kDelimiters[] = {',', '\t', ';', ' ', '|'};
  options.delimiter = (a & 7) < 5 ? kDelimiters[a & 7] : static_cast<char>(b);
  options.header = static_cast<client::HeaderMode>((a >> 3) % 3);
  options.numeric = (a & 0x20) == 0;
  if (b & 0x01) options.columns = {"2", "1"};
  if (b & 0x02) options.columns = {"a", "b"};
  if (b & 0x04) options.drop = {"1"};
  if (b & 0x08) options.extra = {"3"};
  if (b & 0x10) options.text = {"1"};
  if (b & 0x20) options.text = {"id", "4"};
  const std::string text(reinterpret_cast<const char*>(data + 2), size - 2);
  absl::StatusOr<client::Table> table = client::ParseCsv(text, options);
  if (!table.ok()) return 0;
  Require(table->values.size() == table->rows * table->cols, "values are not rows x cols");
  Require(table->features <= table->cols, "more features than numeric columns");
  Require(table->column_names.empty() || table->column_names.size() == table->cols,
          "column names do not match the numeric columns");
  Require(table->text.size() == table->text_names.size(), "text columns without names");
  for (const auto& column : table->text) {
    Require(column.size() == table->rows, "a text column without a cell per row");
  }
  return 0;
}
