// Fuzzes core's Newick reader (emfit/mk/tree.h), which reads the trees of Mk calls sent by any
// client: any text is a tree or an error, never a crash or a deep recursion, and a tree read is
// consistent and written back (WriteNewick) reads as the same tree.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "emfit/mk/tree.h"
#include "fuzz_require.h"

namespace {

bool SameLengths(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using emfit::fuzz::Require;
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<emfit::mk::Tree> tree = emfit::mk::ParseNewick(text);
  if (!tree.ok()) return 0;
  const int n = tree->num_nodes();
  Require(tree->num_tips >= 2 && tree->num_tips < n + 1, "a tree without two tips");
  Require(tree->parent.size() == static_cast<size_t>(n) &&
              tree->child_offsets.size() == static_cast<size_t>(n) + 1 &&
              tree->children.size() == static_cast<size_t>(n) - 1 &&
              tree->length.size() == static_cast<size_t>(n) &&
              tree->postorder.size() == static_cast<size_t>(n) &&
              tree->labels.size() == static_cast<size_t>(n),
          "arrays of the wrong size");
  Require(tree->parent[tree->root()] == -1 && tree->postorder.back() == tree->root(),
          "the root is not node n, last in post-order");
  for (int v = 0; v < n; ++v) {
    for (int c : tree->Children(v)) Require(tree->parent[c] == v, "a child's parent differs");
    Require(tree->IsTip(v) == tree->Children(v).empty(), "tips are not the nodes without children");
  }
  absl::StatusOr<emfit::mk::Tree> again = emfit::mk::ParseNewick(emfit::mk::WriteNewick(*tree));
  Require(again.ok(), "a tree written back does not read");
  Require(again->num_tips == tree->num_tips && again->parent == tree->parent &&
              again->children == tree->children && again->labels == tree->labels &&
              SameLengths(again->length, tree->length),
          "a tree written back reads as another tree");
  return 0;
}
