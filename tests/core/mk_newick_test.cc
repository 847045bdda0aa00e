// The Newick reader and writer (docs/algorithms.md §4.1, oracle 43).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "emfit/mk/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/status_matchers.h"

namespace emfit::mk {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;
using ::testing::ElementsAre;

// Every structural invariant of a parsed tree.
void ExpectWellFormed(const Tree& t) {
  const int n = t.num_nodes();
  ASSERT_EQ(static_cast<int>(t.length.size()), n);
  ASSERT_EQ(static_cast<int>(t.labels.size()), n);
  ASSERT_EQ(static_cast<int>(t.child_offsets.size()), n + 1);
  ASSERT_EQ(static_cast<int>(t.children.size()), n - 1);
  ASSERT_EQ(static_cast<int>(t.postorder.size()), n);
  EXPECT_EQ(t.parent[t.root()], -1);
  EXPECT_EQ(t.postorder.back(), t.root());
  std::vector<int> position(n, -1);
  for (int i = 0; i < n; ++i) position[t.postorder[i]] = i;
  for (int v = 0; v < n; ++v) {
    ASSERT_GE(position[v], 0);
    EXPECT_EQ(t.IsTip(v), t.Children(v).empty()) << "node " << v;
    for (int c : t.Children(v)) {
      EXPECT_EQ(t.parent[c], v);
      EXPECT_LT(position[c], position[v]);
    }
    if (v != t.root()) {
      EXPECT_GE(t.length[v], 0.0);
      EXPECT_NE(t.parent[v], -1);
    }
  }
}

TEST(Newick, ParsesTheOlsenExampleToFiveTipsFourInternalNodesAndLength2point8) {
  absl::StatusOr<Tree> t =
      ParseNewick("(((One:0.2,Two:0.3):0.3,(Three:0.5,Four:0.3):0.2):0.3,Five:0.7):0.0;");
  ASSERT_THAT(t, IsOk());
  ExpectWellFormed(*t);
  EXPECT_EQ(t->num_tips, 5);
  EXPECT_EQ(t->num_nodes() - t->num_tips, 4);
  EXPECT_NEAR(t->TotalLength(), 2.8, 1e-12);
  EXPECT_THAT(t->TipLabels(), ElementsAre("One", "Two", "Three", "Four", "Five"));
  EXPECT_EQ(t->length[t->root()], 0.0);
}

TEST(Newick, NumbersTipsInTextOrderAndInternalNodesInPreorderLikeApe) {
  absl::StatusOr<Tree> t = ParseNewick("((A:1,B:2)x:3,(C:4,D:5)y:6)r;");
  ASSERT_THAT(t, IsOk());
  ExpectWellFormed(*t);
  // ape: tips 1..4, root 5, then x = 6, y = 7.
  EXPECT_EQ(t->root(), 4);
  EXPECT_EQ(t->labels[4], "r");
  EXPECT_EQ(t->labels[5], "x");
  EXPECT_EQ(t->labels[6], "y");
  EXPECT_THAT(t->Children(4), ElementsAre(5, 6));
  EXPECT_THAT(t->Children(5), ElementsAre(0, 1));
  EXPECT_THAT(t->Children(6), ElementsAre(2, 3));
  EXPECT_EQ(t->length[1], 2.0);
  EXPECT_EQ(t->length[6], 6.0);
  EXPECT_TRUE(std::isnan(t->length[4]));
  EXPECT_THAT(t->postorder, ElementsAre(0, 1, 5, 2, 3, 6, 4));
}

TEST(Newick, QuotedLabelsUnescapeQuotesAndUnderscoresBecomeSpaces) {
  absl::StatusOr<Tree> t = ParseNewick("('A ''x''':1,B_c:2);");
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->TipLabels(), ElementsAre("A 'x'", "B c"));
  absl::StatusOr<Tree> q = ParseNewick("('a_b':1,'(,:;)':2);");
  ASSERT_THAT(q, IsOk());
  EXPECT_THAT(q->TipLabels(), ElementsAre("a_b", "(,:;)"));
}

TEST(Newick, SkipsCommentsWhereverWhitespaceMayBe) {
  absl::StatusOr<Tree> t =
      ParseNewick("[&R] ( A [c1] : [c2] 1 , [c3] B:2 ) [c4] lab [c5] : 0.5 [c6] ; [end]");
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->TipLabels(), ElementsAre("A", "B"));
  EXPECT_EQ(t->labels[t->root()], "lab");
  EXPECT_EQ(t->length[0], 1.0);
  EXPECT_EQ(t->length[t->root()], 0.5);
}

TEST(Newick, AcceptsPolytomiesUnaryNodesZeroLengthsAndExponents) {
  absl::StatusOr<Tree> t = ParseNewick("((A:1e-3,B:0,C:2.5E+1):1,(D:1)u:0.5E-2)100:0;");
  ASSERT_THAT(t, IsOk());
  ExpectWellFormed(*t);
  EXPECT_EQ(t->num_tips, 4);
  EXPECT_EQ(t->Children(5).size(), 3u);
  EXPECT_EQ(t->Children(6).size(), 1u);
  EXPECT_EQ(t->labels[6], "u");
  EXPECT_EQ(t->labels[4], "100");
  EXPECT_EQ(t->length[0], 1e-3);
  EXPECT_EQ(t->length[1], 0.0);
  EXPECT_EQ(t->length[2], 25.0);
  EXPECT_EQ(t->length[6], 0.005);
}

struct BadCase {
  std::string text;
  const char* message;
};

TEST(Newick, RejectsEveryBadInputWithTheProblemAndWhereItIs) {
  const BadCase cases[] = {
      {"((A:1,B:1):1,C:1;",
       "unbalanced parentheses: 1 '(' not closed before ';' (the last "
       "opened at byte 0) at byte 16"},
      {"(A:1,B:1)):1;", "unbalanced parentheses: ')' closes no '(' at byte 9"},
      {"(A:1,B:1)", "missing ';' at the end of the tree at byte 9"},
      {"(A:1,B:1);;", "more than one ';' (exactly one ends the tree) at byte 10"},
      {"(A:1,B:1); (C:1,D:1);", "text after the ';' that ends the tree at byte 11"},
      {"(A:1,B);", "missing branch length for 'B' at byte 5"},
      {"(A:1,(B:1,C:1));", "missing branch length for the node opened at byte 5 at byte 5"},
      {"(A:-1,B:1);", "negative branch length -1 for 'A' at byte 3"},
      {"(A:1,B:x2);", "non-numeric branch length 'x2' for 'B' at byte 7"},
      {"(A:1,B:nan);", "non-numeric branch length 'nan' for 'B' at byte 7"},
      {"(A:1,B:inf);", "non-numeric branch length 'inf' for 'B' at byte 7"},
      {"(A:1,B:);", "missing branch length after ':' for 'B' at byte 6"},
      {"(A:1,A:2);", "duplicate tip label 'A' at bytes 1 and 5"},
      {"(A:1);", "the tree has 1 tip; at least 2 are needed"},
      {"A;", "the tree has 1 tip; at least 2 are needed"},
      {"(A:1,:1);", "tip without a label at byte 5"},
      {"", "empty text: no tree at byte 0"},
      {"(A:1,B:1)[unterminated;", "unterminated comment '[' at byte 9"},
      {"('A:1,B:1);", "unterminated quoted label at byte 1"},
      {"(A:1 C,B:1);", "unexpected 'C' (expected ',', ')' or ';') at byte 5"},
      {"(A:1:2,B:1);", "a second branch length at byte 4"},
      {std::string("(A:1,B:1)\0;", 11), "control character 0x00 at byte 9"},
      {"(A\x01:1,B:1);", "control character 0x01 at byte 2"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.message);
    EXPECT_THAT(ParseNewick(c.text), StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  }
}

// A caterpillar ((((t0,t1),t2),t3)...) with n tips: nesting depth n-1.
std::string Caterpillar(int n) {
  std::string s(n - 1, '(');
  s += "t0:1";
  for (int i = 1; i < n; ++i) s += ",t" + std::to_string(i) + ":1):0.5";
  return s + ";";
}

// A balanced tree with 2^depth tips.
std::string Balanced(int depth) {
  std::vector<std::string> level;
  for (int i = 0; i < (1 << depth); ++i) level.push_back("t" + std::to_string(i) + ":0.25");
  while (level.size() > 1) {
    std::vector<std::string> up;
    for (size_t i = 0; i < level.size(); i += 2) {
      up.push_back("(" + level[i] + "," + level[i + 1] + "):1");
    }
    level.swap(up);
  }
  return level[0] + ";";
}

TEST(Newick, ParsesA100000TipCaterpillarWithoutRecursion) {
  absl::StatusOr<Tree> t = ParseNewick(Caterpillar(100000));
  ASSERT_THAT(t, IsOk());
  ExpectWellFormed(*t);
  EXPECT_EQ(t->num_tips, 100000);
  EXPECT_EQ(t->num_nodes(), 199999);
  // The deepest internal node is the last one opened.
  EXPECT_THAT(t->Children(t->num_nodes() - 1), ElementsAre(0, 1));
  EXPECT_DOUBLE_EQ(t->TotalLength(), 100000 + 0.5 * (100000 - 2));
  // The writer is iterative too.
  absl::StatusOr<Tree> back = ParseNewick(WriteNewick(*t));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->parent, t->parent);
}

TEST(Newick, ParsesABalancedTreeOf2To17Tips) {
  absl::StatusOr<Tree> t = ParseNewick(Balanced(17));
  ASSERT_THAT(t, IsOk());
  ExpectWellFormed(*t);
  EXPECT_EQ(t->num_tips, 1 << 17);
}

void ExpectSameTree(const Tree& a, const Tree& b) {
  EXPECT_EQ(a.num_tips, b.num_tips);
  EXPECT_EQ(a.parent, b.parent);
  EXPECT_EQ(a.children, b.children);
  EXPECT_EQ(a.child_offsets, b.child_offsets);
  EXPECT_EQ(a.postorder, b.postorder);
  EXPECT_EQ(a.labels, b.labels);
  ASSERT_EQ(a.length.size(), b.length.size());
  for (size_t v = 0; v < a.length.size(); ++v) {
    if (std::isnan(a.length[v])) {
      EXPECT_TRUE(std::isnan(b.length[v]));
    } else {
      EXPECT_EQ(a.length[v], b.length[v]) << "node " << v;  // bitwise: %.17g round-trips
    }
  }
}

TEST(Newick, WriterRoundTripsExactlyWithSeventeenDigits) {
  std::mt19937_64 rng(43);
  std::uniform_real_distribution<double> u(0, 3);
  std::string text = "((A:" + std::to_string(u(rng)) + ",'B_x''y':0.1):0.2,(C:0.3,D:";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", 1.0 / 3.0);
  text += buf;
  text += ")'inner node':1e-300,(E:0)u:7)root:0.0;";
  absl::StatusOr<Tree> t = ParseNewick(text);
  ASSERT_THAT(t, IsOk());
  const std::string written = WriteNewick(*t);
  absl::StatusOr<Tree> back = ParseNewick(written);
  ASSERT_THAT(back, IsOk()) << written;
  ExpectSameTree(*t, *back);
  EXPECT_EQ(WriteNewick(*back), written);
  absl::StatusOr<Tree> anoles = [] {
    std::ifstream in(testing::DataPath("anole_tree.nwk"));
    std::stringstream ss;
    ss << in.rdbuf();
    return ParseNewick(ss.str());
  }();
  ASSERT_THAT(anoles, IsOk());
  EXPECT_EQ(anoles->num_tips, 82);
  absl::StatusOr<Tree> anoles_back = ParseNewick(WriteNewick(*anoles));
  ASSERT_THAT(anoles_back, IsOk());
  ExpectSameTree(*anoles, *anoles_back);
}

TEST(Newick, QuotesOnlyLabelsThatNeedIt) {
  EXPECT_EQ(NewickLabel("Anolis carolinensis"), "Anolis_carolinensis");
  EXPECT_EQ(NewickLabel("a_b"), "'a_b'");
  EXPECT_EQ(NewickLabel("it's"), "'it''s'");
  EXPECT_EQ(NewickLabel("x:y"), "'x:y'");
}

// Parses `text` (any outcome but a crash is fine) and checks a success is well formed.
void ParseSafely(const std::string& text) {
  absl::StatusOr<Tree> t = ParseNewick(text);
  if (t.ok()) {
    ExpectWellFormed(*t);
    absl::StatusOr<Tree> back = ParseNewick(WriteNewick(*t));
    ASSERT_THAT(back, IsOk()) << text;
    ExpectSameTree(*t, *back);
  } else {
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(t.status().message()), ::testing::StartsWith("newick: "));
  }
}

TEST(Newick, CommittedCorpusOfMalformedTreesNeverCrashes) {
  const std::filesystem::path dir =
      std::filesystem::path(EMFIT_TESTS_DIR) / "fixtures" / "newick_corpus";
  int files = 0, rejected = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    SCOPED_TRACE(entry.path().filename().string());
    ParseSafely(ss.str());
    ++files;
    // Files named bad_* must be rejected.
    if (entry.path().filename().string().rfind("bad_", 0) == 0) {
      EXPECT_FALSE(ParseNewick(ss.str()).ok());
      ++rejected;
    }
  }
  EXPECT_GE(files, 20);
  EXPECT_GE(rejected, 15);
}

TEST(Newick, SeededRandomMutationsOfValidTreesNeverCrash) {
  const std::vector<std::string> seeds = {
      "(((One:0.2,Two:0.3):0.3,(Three:0.5,Four:0.3):0.2):0.3,Five:0.7):0.0;",
      "('A ''x''':1,B_c:2)[&R];", "((A:1e-3,B:0,C:2.5E+1):1,(D:1)u:0.5E-2)100:0;", Balanced(4)};
  const std::string alphabet = "():;,[]' _eE-+.0123456789ABx\t\n";
  std::mt19937_64 rng(20240611);
  for (int trial = 0; trial < 20000; ++trial) {
    std::string s = seeds[trial % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
      switch (rng() % 4) {
        case 0:  // delete
          if (at < s.size()) s.erase(at, 1);
          break;
        case 1:  // insert
          s.insert(s.begin() + at, alphabet[rng() % alphabet.size()]);
          break;
        case 2:  // replace
          if (at < s.size()) s[at] = alphabet[rng() % alphabet.size()];
          break;
        default:  // duplicate a slice
          if (at < s.size()) s.insert(at, s.substr(at, rng() % 8));
      }
    }
    ParseSafely(s);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "input: " << s;
      return;
    }
  }
}

}  // namespace
}  // namespace emfit::mk
