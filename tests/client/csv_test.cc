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

TEST(ParseCsv, TextColumnsAndTextFeatures) {
  CsvOptions o;
  o.text = {"id"};
  o.extra = {"w"};
  // Numeric features: the symbols are not numbers.
  EXPECT_THAT(ParseCsv("id,sym,w\na,rain,1\n", o),
              StatusIs(absl::StatusCode::kInvalidArgument, "'rain' is not a number"));
  // The features as text: the symbols of a categorical model.
  o.text_features = true;
  absl::StatusOr<Table> t = ParseCsv("id,sym,w\na,rain,1\na,,2\nb,sun,1\n", o);
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->features, 0u);
  EXPECT_EQ(t->cols, 1u);  // the weights
  EXPECT_THAT(t->values, ::testing::ElementsAre(1, 2, 1));
  EXPECT_THAT(t->text_names, ::testing::ElementsAre("id", "sym"));
  EXPECT_THAT(t->text[0], ::testing::ElementsAre("a", "a", "b"));
  EXPECT_THAT(t->text[1], ::testing::ElementsAre("rain", "", "sun"));
  o.drop = {"sym"};
  EXPECT_THAT(ParseCsv("id,sym,w\na,rain,1\n", o),
              StatusIs(absl::StatusCode::kInvalidArgument, "no column is left"));
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
