// Stochastic maps written by emfit, read back by phytools::read.simmap (R): the counts and
// dwelling times phytools reports equal the maps' own. Skipped, with a message, when R and
// phytools are not installed (apt-get install -y r-cran-phytools).
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/status_matchers.h"

namespace emfit::mk {
namespace {

using ::emfit::testing::IsOk;

bool HavePhytools() {
  return std::system("Rscript -e 'suppressMessages(library(phytools))' >/dev/null 2>&1") == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(MkSimmapPhytools, ReadSimmapReportsTheMapsCountsAndTimes) {
  if (!HavePhytools()) {
    GTEST_SKIP() << "R with phytools is not installed (apt-get install -y r-cran-phytools); "
                    "the SIMMAP read-back check did not run";
  }
  absl::StatusOr<Tree> tree = ParseNewick(ReadFile(testing::DataPath("anole_tree.nwk")));
  ASSERT_THAT(tree, IsOk());
  std::vector<std::string> labels, states;
  {
    std::istringstream csv(ReadFile(testing::DataPath("anole_ecomorph.csv")));
    std::string line;
    std::getline(csv, line);  // header
    while (std::getline(csv, line)) {
      const std::vector<std::string> f = absl::StrSplit(line, ',');
      labels.push_back(f[0]);
      states.push_back(f[1]);
    }
  }
  const std::vector<std::string> names = StateNames(states);
  MkTips tips;
  tips.labels = labels;
  absl::StatusOr<Eigen::MatrixXd> lik = TipLikelihoods(labels, states, names);
  ASSERT_THAT(lik, IsOk());
  tips.likelihoods = *lik;
  // ER at phytools' estimate (tests/fixtures/phytools_anoles.json).
  absl::StatusOr<MkParams> params = MkParams::FromRates(
      names, RateIndex(RateModel::kER, 6), Eigen::VectorXd::Constant(1, 0.02314141849727868));
  ASSERT_THAT(params, IsOk());
  const std::string dir = ::testing::TempDir();
  const std::string maps_path = dir + "/emfit_anole_maps.txt";
  const std::string out_path = dir + "/emfit_anole_counts.txt";
  const std::string script_path = dir + "/emfit_read_simmap.R";
  std::vector<StochasticMap> maps;
  {
    std::ofstream out(maps_path);
    ASSERT_THAT(SampleHistories(*params, *tree, tips, 25, 2024, {}, {},
                                [&](int64_t, const StochasticMap& map) {
                                  absl::StatusOr<std::string> line = WriteSimmap(*tree, map, names);
                                  if (!line.ok()) return line.status();
                                  out << *line << "\n";
                                  maps.push_back(map);
                                  return absl::OkStatus();
                                }),
                IsOk());
  }
  {
    std::ofstream script(script_path);
    script << R"(args <- commandArgs(trailingOnly = TRUE)
suppressMessages(library(phytools))
trees <- read.simmap(file = args[1], format = "phylip")
if (inherits(trees, "simmap")) trees <- list(trees)
out <- character(0)
for (i in seq_along(trees)) {
  x <- countSimmap(trees[[i]], message = FALSE)
  tr <- x$Tr
  cells <- c()
  for (a in rownames(tr)) for (b in colnames(tr)) cells <- c(cells, paste0(a, ">", b, "=", tr[a, b]))
  times <- colSums(trees[[i]]$mapped.edge)
  out <- c(out, paste(i - 1, Ntip(trees[[i]]), x$N, paste(cells, collapse = " "),
                      paste(paste0(names(times), "@", sprintf("%.15g", times)), collapse = " ")))
}
writeLines(out, args[2])
)";
  }
  const std::string command =
      "Rscript " + script_path + " " + maps_path + " " + out_path + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  std::istringstream result(ReadFile(out_path));
  std::string line;
  int seen = 0;
  while (std::getline(result, line)) {
    const std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_GE(f.size(), 3u);
    int i = 0, ntip = 0, n = 0;
    ASSERT_TRUE(absl::SimpleAtoi(f[0], &i) && absl::SimpleAtoi(f[1], &ntip) &&
                absl::SimpleAtoi(f[2], &n));
    ASSERT_LT(i, static_cast<int>(maps.size()));
    const StochasticMap& map = maps[i];
    EXPECT_EQ(ntip, 82);
    EXPECT_EQ(n, static_cast<int>(map.transitions.sum())) << "map " << i;
    std::map<std::string, int> index;
    for (int s = 0; s < 6; ++s) index[names[s]] = s;
    for (size_t j = 3; j < f.size(); ++j) {
      if (f[j].find('>') != std::string::npos) {
        const std::vector<std::string> kv = absl::StrSplit(f[j], '=');
        const std::vector<std::string> ab = absl::StrSplit(kv[0], '>');
        int count = 0;
        ASSERT_TRUE(absl::SimpleAtoi(kv[1], &count));
        EXPECT_EQ(count, map.transitions(index.at(ab[0]), index.at(ab[1])))
            << "map " << i << " " << kv[0];
      } else {
        const std::vector<std::string> kv = absl::StrSplit(f[j], '@');
        double time = 0;
        ASSERT_TRUE(absl::SimpleAtod(kv[1], &time));
        EXPECT_NEAR(time, map.dwelling_times[index.at(kv[0])], 1e-9) << "map " << i << " " << kv[0];
      }
    }
    ++seen;
  }
  EXPECT_EQ(seen, 25);
}

}  // namespace
}  // namespace emfit::mk
