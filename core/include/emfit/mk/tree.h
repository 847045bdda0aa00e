// Rooted phylogenetic trees and the Newick format (docs/algorithms.md §4.1).
#ifndef EMFIT_CORE_MK_TREE_H_
#define EMFIT_CORE_MK_TREE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace emfit::mk {

// A rooted tree with branch lengths, as arrays.
//
// Node numbering (stable, and the numbering every Mk result uses): the n tips are 0..n-1 in the
// order they appear in the Newick text; the internal nodes are n..N-1 in the order of their
// opening '(' (pre-order), so the root is node n. This is ape's numbering (`read.tree`) minus
// one, so internal node v here is node v+1 in ape and phytools.
//
// A tip is a node without children. Unary nodes and polytomies are allowed. Plain value type.
struct Tree {
  int num_tips = 0;
  std::vector<int> parent;         // N entries; -1 for the root
  std::vector<int> child_offsets;  // N+1 entries: v's children are children[offsets[v], [v+1])
  std::vector<int> children;       // N-1 entries, each node's children in text order
  // Length of the branch above each node (>= 0, finite). The root's entry is the length the
  // text gave it, or NaN when it gave none; models ignore it.
  std::vector<double> length;
  std::vector<int> postorder;       // N entries, children before their parent, the root last
  std::vector<std::string> labels;  // N entries; "" when a node has none (tips always have one)

  int num_nodes() const { return static_cast<int>(parent.size()); }
  int root() const { return num_tips; }
  bool IsTip(int v) const { return v < num_tips; }
  absl::Span<const int> Children(int v) const {
    return absl::MakeConstSpan(children.data() + child_offsets[v],
                               child_offsets[v + 1] - child_offsets[v]);
  }
  // Sum of every branch length except the root's.
  double TotalLength() const;
  // The tip labels in tip order (labels[0..n-1]).
  std::vector<std::string> TipLabels() const;
};

// Reads one tree in Newick format (Olsen's interpretation of "Newick's 8:45"):
//   - unquoted labels exclude whitespace and ()[]':;, and their underscores become spaces;
//     quoted labels are '...' with '' for a quote; internal labels are kept;
//   - [...] comments may appear wherever whitespace may and are skipped;
//   - every branch but the root's needs a length: a finite decimal number >= 0, exponents
//     allowed; the root's is optional and ignored by models;
//   - polytomies and unary nodes are allowed; the text ends with exactly one ';'.
// Parses with an explicit stack (no recursion), in time linear in the text.
//
// Errors (INVALID_ARGUMENT, the message names the problem and its byte offset, 0-based, or the
// label): unbalanced parentheses, a missing, negative or non-numeric branch length, a tip
// without a label, duplicate tip labels, not exactly one ';', fewer than 2 tips.
absl::StatusOr<Tree> ParseNewick(absl::string_view text);

// Writes `tree` as Newick with lengths printed by %.17g, so ParseNewick(WriteNewick(t))
// reproduces t exactly (labels, lengths, numbering). Labels are quoted when they need it.
std::string WriteNewick(const Tree& tree);

// The walk WriteNewick and the SIMMAP writer share: appends the tree's parentheses and commas
// to `out`, in node order without recursion, and calls `node(v, out)` where node v's label and
// branch annotation go (after its subtree), then appends the final ';'.
void WriteNewickWith(const Tree& tree, absl::FunctionRef<void(int v, std::string* out)> node,
                     std::string* out);

// `label` as a Newick label: unquoted with spaces as underscores when that reads back the
// same, otherwise quoted.
std::string NewickLabel(absl::string_view label);

}  // namespace emfit::mk

#endif  // EMFIT_CORE_MK_TREE_H_
