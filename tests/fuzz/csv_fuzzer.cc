// libFuzzer target: the CLI's CSV reader (client/csv.h) on any text, with options chosen by the
// input's first byte. Invariants checked on success: the table's shape adds up.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "csv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using emfit::client::CsvOptions;
  using emfit::client::HeaderMode;
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  CsvOptions options;
  options.header = mode % 3 == 0   ? HeaderMode::kAuto
                   : mode % 3 == 1 ? HeaderMode::kYes
                                   : HeaderMode::kNo;
  options.delimiter = (mode & 4) ? ';' : ',';
  if (mode & 8) options.columns = {"2", "1"};
  if (mode & 16) options.text = {"1"};
  if (mode & 32) options.extra = {"3"};
  if (mode & 64) options.text_features = true;
  if (mode & 128) options.numeric = false;
  const absl::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<emfit::client::Table> table = emfit::client::ParseCsv(text, options);
  if (!table.ok()) return 0;
  if (table->values.size() != table->rows * table->cols || table->features > table->cols) {
    std::abort();
  }
  for (const auto& column : table->text) {
    if (column.size() != table->rows) std::abort();
  }
  return 0;
}
