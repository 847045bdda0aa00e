#include "csv.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/status_matchers.h"

namespace emfit::client {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;

TEST(ParseCsv, DetectsAHeaderAndReadsRowMajorValues) {
  absl::StatusOr<Table> t = ParseCsv("a,b\n1,2\n3.5,-4e2\n");
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->column_names, ::testing::ElementsAre("a", "b"));
  EXPECT_EQ(t->rows, 2u);
  EXPECT_EQ(t->cols, 2u);
  EXPECT_THAT(t->values, ::testing::ElementsAre(1, 2, 3.5, -400));
}

TEST(ParseCsv, NumericFirstLineIsData) {
  absl::StatusOr<Table> t = ParseCsv("1,2\r\n3,4\r\n\n");
  ASSERT_THAT(t, IsOk());
  EXPECT_TRUE(t->column_names.empty());
  EXPECT_EQ(t->rows, 2u);
}

TEST(ParseCsv, MissingCellsAreNaN) {
  absl::StatusOr<Table> t = ParseCsv("x,y,z\n1,,NA\nNaN,2, 3 \n");
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->values[0], 1);
  EXPECT_TRUE(std::isnan(t->values[1]));
  EXPECT_TRUE(std::isnan(t->values[2]));
  EXPECT_TRUE(std::isnan(t->values[3]));
  EXPECT_EQ(t->values[5], 3);
}

TEST(ParseCsv, IgnoresAByteOrderMarkAndAcceptsQuotedNumbers) {
  absl::StatusOr<Table> t = ParseCsv(
      "\xEF\xBB\xBF"
      "1,2\n\"3\",\" 4 \"\n");
  ASSERT_THAT(t, IsOk());
  EXPECT_TRUE(t->column_names.empty());
  EXPECT_EQ(t->rows, 2u);
  EXPECT_THAT(t->values, ::testing::ElementsAre(1, 2, 3, 4));
  absl::StatusOr<Table> named = ParseCsv(
      "\xEF\xBB\xBF"
      "w,x\n1,2\n");
  ASSERT_THAT(named, IsOk());
  EXPECT_THAT(named->column_names, ::testing::ElementsAre("w", "x"));
}

TEST(ParseCsv, ErrorsNameTheLineAndColumn) {
  EXPECT_THAT(ParseCsv("a,b\n1,2\n3,x\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, "line 3, column 2"));
  EXPECT_THAT(ParseCsv("a,b\n1,2\n3\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, "line 3: expected 2 cells"));
  EXPECT_THAT(ParseCsv("a,b\n"), StatusIs(absl::StatusCode::kInvalidArgument, "no data rows"));
}

TEST(ParseCsv, HeaderModeAndDelimiterAreHonoured) {
  CsvOptions o;
  o.header = HeaderMode::kYes;
  o.delimiter = ';';
  absl::StatusOr<Table> t = ParseCsv("1;2\n3;4\n", o);
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->column_names, ::testing::ElementsAre("1", "2"));
  EXPECT_EQ(t->rows, 1u);
}

TEST(ParseCsv, TextOnlyReadsTheTextColumnsWhateverTheOthersHold) {
  CsvOptions o;
  o.header = HeaderMode::kYes;
  o.numeric = false;
  o.text = {"taxon", "3"};
  absl::StatusOr<Table> t = ParseCsv("taxon,size,ecomorph\nahli,big,TG\nalu,,CG|TC\n", o);
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->rows, 2u);
  EXPECT_EQ(t->cols, 0u);
  EXPECT_TRUE(t->values.empty());
  EXPECT_THAT(t->text_names, ::testing::ElementsAre("taxon", "ecomorph"));
  EXPECT_THAT(t->text[0], ::testing::ElementsAre("ahli", "alu"));
  EXPECT_THAT(t->text[1], ::testing::ElementsAre("TG", "CG|TC"));
}

TEST(ReadCsvFile, ReadsTheBundledData) {
  absl::StatusOr<Table> t = ReadCsvFile(testing::DataPath("faithful.csv"));
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->rows, 272u);
  EXPECT_EQ(t->cols, 2u);
  EXPECT_THAT(ReadCsvFile("/nonexistent/x.csv"),
              StatusIs(absl::StatusCode::kNotFound, "cannot open"));
}

}  // namespace
}  // namespace emfit::client
