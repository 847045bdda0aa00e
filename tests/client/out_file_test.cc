#include "out_file.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model_io.h"
#include "testing/status_matchers.h"

namespace emfit::client {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A fresh directory for one test's files.
std::string MakeDirectory() {
  std::string dir = ::testing::TempDir() + "out_file_test-XXXXXX";
  EXPECT_NE(mkdtemp(dir.data()), nullptr);
  return dir;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string Contents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Put(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(OutFile, CommitReplacesTheFileWholeAndLeavesNoTemporary) {
  const std::string dir = MakeDirectory();
  const std::string path = dir + "/result.csv";
  Put(path, "old\n");
  {
    OutFile out("--out", path);
    ASSERT_TRUE(out.ok());
    out.Write("a,b\n");
    out.Write("1,2\n");
    EXPECT_EQ(Contents(path), "old\n");  // nothing replaced before Commit
    EXPECT_TRUE(out.Commit());
    EXPECT_EQ(out.name(), path);
  }
  EXPECT_EQ(Contents(path), "a,b\n1,2\n");
  EXPECT_THAT(Entries(dir), ElementsAre("result.csv"));
}

TEST(OutFile, AFileNotCommittedKeepsTheOldOneAndRemovesItsTemporary) {
  const std::string dir = MakeDirectory();
  const std::string path = dir + "/result.csv";
  Put(path, "old\n");
  {
    OutFile out("--out", path);
    out.Write("half a result");
  }
  EXPECT_EQ(Contents(path), "old\n");
  EXPECT_THAT(Entries(dir), ElementsAre("result.csv"));
}

TEST(OutFile, AnUnwritablePathIsAnErrorNamingTheFlagAndThePath) {
  const std::string dir = MakeDirectory();
  const std::string path = dir + "/no-such-dir/summary.csv";
  OutFile out("--summary_out", path);
  EXPECT_FALSE(out.ok());
  EXPECT_THAT(out.Error(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "--summary_out: cannot write '" + path + "': No such file or directory"));
  EXPECT_FALSE(out.Commit());
}

TEST(OutFile, ARenameOntoADirectoryFailsAtCommitAndRemovesTheTemporary) {
  const std::string dir = MakeDirectory();
  const std::string target = dir + "/taken";
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  {
    OutFile out("--summary_out", target);
    ASSERT_TRUE(out.ok());  // the temporary is made next to it
    out.Write("x\n");
    EXPECT_FALSE(out.Commit());
    EXPECT_THAT(out.Error(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         "--summary_out: cannot write '" + target + "': Is a directory"));
  }
  EXPECT_THAT(Entries(dir), ElementsAre("taken"));
}

TEST(OutFile, DashAndEmptyMeanStandardOutput) {
  OutFile dash("--out", "-");
  OutFile empty("--out", "");
  EXPECT_TRUE(dash.to_stdout());
  EXPECT_TRUE(empty.to_stdout());
  EXPECT_EQ(dash.name(), "standard output");
}

TEST(WriteJson, WritesThroughAnOutFileAndNamesTheFlagOnError) {
  const std::string dir = MakeDirectory();
  v1::Model model;
  model.add_feature_names("x");
  ASSERT_THAT(WriteJson(model, "--out", dir + "/model.json"), IsOk());
  EXPECT_THAT(Contents(dir + "/model.json"), HasSubstr("\"feature_names\": [\n  \"x\"\n ]"));
  EXPECT_THAT(WriteJson(model, "--summary_out", dir),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "--summary_out: cannot write '" + dir + "': Is a directory"));
  EXPECT_THAT(Entries(dir), ElementsAre("model.json"));
}

}  // namespace
}  // namespace emfit::client
