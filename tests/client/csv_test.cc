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

TEST(ParseCsv, ColumnsSelectAndOrderByNameOrIndexAndDropLeavesOut) {
  const char* text = "id,a,b,c\n1,2,3,4\n5,6,7,8\n";
  CsvOptions o;
  o.columns = {"c", "2"};
  absl::StatusOr<Table> t = ParseCsv(text, o);
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->column_names, ::testing::ElementsAre("c", "a"));
  EXPECT_THAT(t->values, ::testing::ElementsAre(4, 2, 8, 6));
  o = CsvOptions{};
  o.drop = {"id"};
  o.extra = {"b"};  // e.g. row weights: kept last
  t = ParseCsv(text, o);
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->column_names, ::testing::ElementsAre("a", "c", "b"));
  EXPECT_EQ(t->features, 2u);
  EXPECT_THAT(t->values, ::testing::ElementsAre(2, 4, 3, 6, 8, 7));
}

TEST(ParseCsv, AColumnAskedForTwiceOrInTwoRolesIsRefused) {
  const char* text = "a,b,c\n1,2,3\n";
  CsvOptions o;
  o.columns = {"a", "a"};
  EXPECT_THAT(ParseCsv(text, o),
              StatusIs(absl::StatusCode::kInvalidArgument, "column 1 'a' is asked for twice"));
  o.columns = {"b"};
  o.extra = {"b"};  // the weights column as a feature too
  EXPECT_THAT(ParseCsv(text, o), StatusIs(absl::StatusCode::kInvalidArgument, "asked for twice"));
  o = CsvOptions{};
  o.columns = {"a"};
  o.drop = {"b"};
  EXPECT_THAT(ParseCsv(text, o),
              StatusIs(absl::StatusCode::kInvalidArgument, "--drop: not with --columns"));
  o = CsvOptions{};
  o.columns = {"x"};
  EXPECT_THAT(ParseCsv(text, o), StatusIs(absl::StatusCode::kInvalidArgument,
                                          "column 'x' is neither a name of the header [a, b, c]"));
  o.columns = {"a"};
  EXPECT_THAT(ParseCsv("a,a\n1,2\n", o),
              StatusIs(absl::StatusCode::kInvalidArgument, "appears more than once"));
}

TEST(ParseCsv, AnIdColumnDroppedByIndexDoesNotMakeTheFirstRowAHeader) {
  CsvOptions o;
  o.drop = {"1"};
  absl::StatusOr<Table> t = ParseCsv("r1,3.6,79\nr2,1.8,54\n", o);
  ASSERT_THAT(t, IsOk());
  EXPECT_TRUE(t->column_names.empty());
  EXPECT_EQ(t->rows, 2u);
  EXPECT_THAT(t->values, ::testing::ElementsAre(3.6, 79, 1.8, 54));
}

TEST(ParseCsv, TextColumnsAreKeptApartAsStrings) {
  CsvOptions o;
  o.text = {"seq"};
  absl::StatusOr<Table> t = ParseCsv("seq,x\ns1,1\ns1,2\n\"s 2\",3\n", o);
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT(t->column_names, ::testing::ElementsAre("x"));
  ASSERT_EQ(t->text.size(), 1u);
  EXPECT_THAT(t->text[0], ::testing::ElementsAre("s1", "s1", "s 2"));
  EXPECT_THAT(t->values, ::testing::ElementsAre(1, 2, 3));
}

TEST(ParseCsv, AnotherLikelyDelimiterIsHinted) {
  EXPECT_THAT(ParseCsv("a;b\n1;2\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, "try --delimiter=';'"));
  EXPECT_THAT(ParseCsv("a\tb\n1\t2\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, "try --delimiter=tab"));
  absl::StatusOr<char> tab = ParseDelimiter("tab");
  ASSERT_THAT(tab, IsOk());
  EXPECT_EQ(*tab, '\t');
  EXPECT_THAT(ParseDelimiter("ab"), StatusIs(absl::StatusCode::kInvalidArgument, "--delimiter"));
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
  EXPECT_THAT(ReadCsvFile(testing::DataPath("")),
              StatusIs(absl::StatusCode::kInvalidArgument, "is a directory"));
}

}  // namespace
}  // namespace emfit::client
