// libFuzzer target: the Newick reader (core mk::ParseNewick) on any text. A tree it accepts
// must write back (WriteNewick) to text that parses to the same tree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "emfit/mk/tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<emfit::mk::Tree> tree = emfit::mk::ParseNewick(text);
  if (!tree.ok()) return 0;
  absl::StatusOr<emfit::mk::Tree> again = emfit::mk::ParseNewick(emfit::mk::WriteNewick(*tree));
  if (!again.ok() || again->num_nodes() != tree->num_nodes() || again->num_tips != tree->num_tips ||
      again->labels != tree->labels || again->parent != tree->parent) {
    std::abort();
  }
  return 0;
}
