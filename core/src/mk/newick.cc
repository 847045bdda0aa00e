// Newick reader and writer (docs/algorithms.md §4.1).
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "emfit/mk/tree.h"

namespace emfit::mk {

double Tree::TotalLength() const {
  double total = 0;
  for (int v = 0; v < num_nodes(); ++v) {
    if (parent[v] >= 0) total += length[v];
  }
  return total;
}

std::vector<std::string> Tree::TipLabels() const {
  return std::vector<std::string>(labels.begin(), labels.begin() + num_tips);
}

namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u < 0x20 || u == 0x7f) && !IsSpace(c);
}

// Characters that end an unquoted label or a number.
bool IsDelimiter(char c) {
  return IsSpace(c) || c == '(' || c == ')' || c == '[' || c == ']' || c == '\'' || c == ':' ||
         c == ';' || c == ',';
}

std::string Shown(absl::string_view s) {
  constexpr size_t kMax = 40;
  if (s.size() <= kMax) return std::string(s);
  return absl::StrCat(s.substr(0, kMax), "...");
}

// A node as the parser meets it, before the final numbering.
struct RawNode {
  int parent = -1;
  bool tip = true;
  size_t offset = 0;  // byte where the node starts (its '(' or its label)
  double length = std::numeric_limits<double>::quiet_NaN();
  std::string label;
};

class Parser {
 public:
  explicit Parser(absl::string_view text) : s_(text) {}

  absl::StatusOr<Tree> Parse();

 private:
  absl::Status Error(size_t at, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrFormat("newick: %s at byte %d", what, at));
  }
  // Skips whitespace and [...] comments.
  absl::Status SkipSpace() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (IsSpace(c)) {
        ++pos_;
      } else if (c == '[') {
        const size_t end = s_.find(']', pos_ + 1);
        if (end == absl::string_view::npos) return Error(pos_, "unterminated comment '['");
        pos_ = end + 1;
      } else {
        break;
      }
    }
    return absl::OkStatus();
  }
  absl::Status ControlError() const {
    return Error(pos_,
                 absl::StrFormat("control character 0x%02x", static_cast<unsigned char>(s_[pos_])));
  }
  // Reads an optional label at pos_ into `label`.
  absl::Status ReadLabel(std::string* label);
  // Reads the optional ":length" of node `v` (after its label).
  absl::Status ReadLength(int v);
  // Describes node v for messages.
  std::string Describe(int v) const {
    const RawNode& n = nodes_[v];
    if (!n.label.empty()) return absl::StrFormat("'%s'", Shown(n.label));
    return n.tip ? "an unlabelled tip" : absl::StrFormat("the node opened at byte %d", n.offset);
  }

  absl::string_view s_;
  size_t pos_ = 0;
  std::vector<RawNode> nodes_;  // in order of creation (pre-order)
  std::vector<int> postorder_;  // raw ids, children before parents
};

absl::Status Parser::ReadLabel(std::string* label) {
  label->clear();
  if (pos_ < s_.size() && s_[pos_] == '\'') {
    const size_t start = pos_;
    ++pos_;
    while (true) {
      if (pos_ >= s_.size()) return Error(start, "unterminated quoted label");
      const char c = s_[pos_];
      if (IsControl(c)) return ControlError();
      if (c == '\'') {
        if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '\'') {
          label->push_back('\'');
          pos_ += 2;
          continue;
        }
        ++pos_;
        break;
      }
      label->push_back(c);
      ++pos_;
    }
    return absl::OkStatus();
  }
  const size_t start = pos_;
  while (pos_ < s_.size() && !IsDelimiter(s_[pos_])) {
    if (IsControl(s_[pos_])) return ControlError();
    ++pos_;
  }
  label->assign(s_.data() + start, pos_ - start);
  for (char& c : *label) {
    if (c == '_') c = ' ';
  }
  return absl::OkStatus();
}

absl::Status Parser::ReadLength(int v) {
  EMFIT_RETURN_IF_ERROR(SkipSpace());
  if (pos_ >= s_.size() || s_[pos_] != ':') return absl::OkStatus();
  const size_t colon = pos_;
  ++pos_;
  EMFIT_RETURN_IF_ERROR(SkipSpace());
  const size_t start = pos_;
  while (pos_ < s_.size() && !IsDelimiter(s_[pos_])) ++pos_;
  const absl::string_view token = s_.substr(start, pos_ - start);
  if (token.empty()) {
    return Error(colon, absl::StrFormat("missing branch length after ':' for %s", Describe(v)));
  }
  double value = 0;
  if (!absl::SimpleAtod(token, &value) || !std::isfinite(value)) {
    return Error(
        start, absl::StrFormat("non-numeric branch length '%s' for %s", Shown(token), Describe(v)));
  }
  if (value < 0) {
    return Error(start,
                 absl::StrFormat("negative branch length %s for %s", Shown(token), Describe(v)));
  }
  nodes_[v].length = value;
  return absl::OkStatus();
}

absl::StatusOr<Tree> Parser::Parse() {
  std::vector<int> open;  // internal nodes whose ')' has not been read
  nodes_.reserve(s_.size() / 4 + 1);
  postorder_.reserve(s_.size() / 4 + 1);
  int root = -1;
  EMFIT_RETURN_IF_ERROR(SkipSpace());
  if (pos_ >= s_.size()) return Error(pos_, "empty text: no tree");
  // At the start of a subtree: '(' opens an internal node, anything else is a tip.
  bool at_subtree = true;
  while (true) {
    EMFIT_RETURN_IF_ERROR(SkipSpace());
    if (at_subtree) {
      if (pos_ >= s_.size()) return Error(pos_, "unexpected end of text; a subtree was expected");
      const int parent = open.empty() ? -1 : open.back();
      if (root >= 0 && parent < 0) {
        return Error(pos_, "more than one tree: text after the root's ')'");
      }
      RawNode node;
      node.parent = parent;
      node.offset = pos_;
      if (s_[pos_] == '(') {
        node.tip = false;
        nodes_.push_back(std::move(node));
        open.push_back(static_cast<int>(nodes_.size()) - 1);
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') return Error(pos_, "']' without a matching '['");
      nodes_.push_back(std::move(node));
      const int v = static_cast<int>(nodes_.size()) - 1;
      EMFIT_RETURN_IF_ERROR(ReadLabel(&nodes_[v].label));
      if (nodes_[v].label.empty()) {
        return Error(nodes_[v].offset, "tip without a label");
      }
      EMFIT_RETURN_IF_ERROR(ReadLength(v));
      postorder_.push_back(v);
      if (parent < 0) root = v;
      at_subtree = false;
      continue;
    }
    // After a complete subtree.
    if (pos_ >= s_.size()) {
      if (!open.empty()) {
        return Error(pos_, absl::StrFormat("unbalanced parentheses: %d '(' not closed at the end "
                                           "of the text (the last opened at byte %d)",
                                           open.size(), nodes_[open.back()].offset));
      }
      return Error(pos_, "missing ';' at the end of the tree");
    }
    const char c = s_[pos_];
    if (c == ',') {
      if (open.empty()) return Error(pos_, "',' outside any parentheses");
      ++pos_;
      at_subtree = true;
      continue;
    }
    if (c == ')') {
      if (open.empty()) return Error(pos_, "unbalanced parentheses: ')' closes no '('");
      const int v = open.back();
      open.pop_back();
      ++pos_;
      EMFIT_RETURN_IF_ERROR(SkipSpace());
      EMFIT_RETURN_IF_ERROR(ReadLabel(&nodes_[v].label));
      EMFIT_RETURN_IF_ERROR(ReadLength(v));
      postorder_.push_back(v);
      if (open.empty()) root = v;
      continue;
    }
    if (c == ';') {
      if (!open.empty()) {
        return Error(pos_, absl::StrFormat("unbalanced parentheses: %d '(' not closed before ';' "
                                           "(the last opened at byte %d)",
                                           open.size(), nodes_[open.back()].offset));
      }
      ++pos_;
      EMFIT_RETURN_IF_ERROR(SkipSpace());
      if (pos_ < s_.size()) {
        return Error(pos_, s_[pos_] == ';' ? "more than one ';' (exactly one ends the tree)"
                                           : "text after the ';' that ends the tree");
      }
      break;
    }
    if (c == ':') {
      return Error(pos_, "a second branch length");
    }
    if (IsControl(c)) return ControlError();
    return Error(pos_, absl::StrFormat("unexpected '%c' (expected ',', ')' or ';')", c));
  }

  // Branch lengths of every non-root node.
  for (size_t v = 0; v < nodes_.size(); ++v) {
    if (nodes_[v].parent >= 0 && std::isnan(nodes_[v].length)) {
      return Error(nodes_[v].offset,
                   absl::StrFormat("missing branch length for %s", Describe(static_cast<int>(v))));
    }
  }
  // Final numbering: tips in order of appearance, then internal nodes in pre-order.
  const int n_nodes = static_cast<int>(nodes_.size());
  std::vector<int> id(n_nodes);
  int n_tips = 0;
  for (const RawNode& n : nodes_) n_tips += n.tip;
  {
    int next_tip = 0, next_internal = n_tips;
    for (int v = 0; v < n_nodes; ++v) id[v] = nodes_[v].tip ? next_tip++ : next_internal++;
  }
  if (n_tips < 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("newick: the tree has %d tip; at least 2 are needed", n_tips));
  }
  Tree tree;
  tree.num_tips = n_tips;
  tree.parent.assign(n_nodes, -1);
  tree.length.assign(n_nodes, 0.0);
  tree.labels.resize(n_nodes);
  tree.child_offsets.assign(n_nodes + 1, 0);
  absl::flat_hash_map<absl::string_view, size_t> tip_offsets;
  tip_offsets.reserve(n_tips);
  for (int v = 0; v < n_nodes; ++v) {
    const RawNode& n = nodes_[v];
    if (n.tip) {
      auto [it, inserted] = tip_offsets.emplace(n.label, n.offset);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrFormat("newick: duplicate tip label '%s' at bytes %d and %d", Shown(n.label),
                            it->second, n.offset));
      }
    }
    const int u = id[v];
    tree.parent[u] = n.parent < 0 ? -1 : id[n.parent];
    tree.length[u] = n.length;
    if (n.parent >= 0) ++tree.child_offsets[tree.parent[u] + 1];
  }
  for (int v = 0; v < n_nodes; ++v) tree.labels[id[v]] = std::move(nodes_[v].label);
  for (int v = 0; v < n_nodes; ++v) tree.child_offsets[v + 1] += tree.child_offsets[v];
  tree.children.resize(n_nodes - 1);
  {
    // Children in text order: raw ids are in pre-order, which lists siblings left to right.
    std::vector<int> fill(tree.child_offsets.begin(), tree.child_offsets.end() - 1);
    for (int v = 0; v < n_nodes; ++v) {
      if (nodes_[v].parent >= 0) tree.children[fill[id[nodes_[v].parent]]++] = id[v];
    }
  }
  tree.postorder.resize(n_nodes);
  for (int i = 0; i < n_nodes; ++i) tree.postorder[i] = id[postorder_[i]];
  return tree;
}

}  // namespace

absl::StatusOr<Tree> ParseNewick(absl::string_view text) { return Parser(text).Parse(); }

std::string NewickLabel(absl::string_view label) {
  bool quote = label.empty();
  for (char c : label) {
    if (c == '_' || (c != ' ' && IsDelimiter(c))) quote = true;
  }
  std::string out;
  if (!quote) {
    out.assign(label.begin(), label.end());
    for (char& c : out) {
      if (c == ' ') c = '_';
    }
    return out;
  }
  out.push_back('\'');
  for (char c : label) {
    out.push_back(c);
    if (c == '\'') out.push_back('\'');
  }
  out.push_back('\'');
  return out;
}

void WriteNewickWith(const Tree& tree, absl::FunctionRef<void(int v, std::string* out)> node,
                     std::string* out) {
  // (node, index of the next child to write)
  std::vector<std::pair<int, int>> stack;
  stack.reserve(64);
  stack.push_back({tree.root(), 0});
  while (!stack.empty()) {
    auto& [v, next] = stack.back();
    const absl::Span<const int> ch = tree.Children(v);
    if (ch.empty()) {  // a tip (never the root of a valid tree, but written anyway)
      node(v, out);
      stack.pop_back();
      continue;
    }
    if (next == 0) out->push_back('(');
    if (next == static_cast<int>(ch.size())) {
      out->push_back(')');
      node(v, out);
      stack.pop_back();
      continue;
    }
    if (next > 0) out->push_back(',');
    const int c = ch[next++];
    stack.push_back({c, 0});
  }
  out->push_back(';');
}

std::string WriteNewick(const Tree& tree) {
  std::string out;
  out.reserve(static_cast<size_t>(tree.num_nodes()) * 24);
  WriteNewickWith(
      tree,
      [&](int v, std::string* o) {
        if (!tree.labels[v].empty()) *o += NewickLabel(tree.labels[v]);
        if (!std::isnan(tree.length[v])) {
          char buf[40];
          std::snprintf(buf, sizeof(buf), ":%.17g", tree.length[v]);
          *o += buf;
        }
      },
      &out);
  return out;
}

}  // namespace emfit::mk
