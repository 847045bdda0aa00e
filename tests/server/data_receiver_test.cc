// The data receiver's streams (values with a weight column, sequence lengths, Newick text, row
// names) as the client's ChunkCursor cuts them, and every way a client can get them wrong.
#include "data_receiver.h"

#include <string>
#include <vector>

#include "fit_service.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "request_data.h"
#include "testing/status_matchers.h"

namespace emfit::server {
namespace {

using ::emfit::client::ChunkCursor;
using ::emfit::client::RequestData;
using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;

class DataReceiverTest : public ::testing::Test {
 protected:
  DataReceiverTest() : service_(limits_, nullptr, nullptr, nullptr) {}

  // Sends `data` cut into chunks of `chunk_values` through a fresh receiver of `shape`.
  absl::StatusOr<std::shared_ptr<PendingData>> Send(const v1::DataShape& shape,
                                                    const RequestData& data, size_t chunk_values) {
    DataReceiver receiver(&service_);
    if (absl::Status s = receiver.Start(shape, "header.shape"); !s.ok()) return s;
    ChunkCursor cursor(data, chunk_values);
    v1::DataChunk chunk;
    while (!cursor.done()) {
      cursor.Next(&chunk);
      if (absl::Status s = receiver.Append(chunk); !s.ok()) return s;
    }
    return receiver.Finish();
  }

  ServiceLimits limits_;
  FitService service_;
};

TEST_F(DataReceiverTest, EveryStreamArrivesWholeWhateverTheChunkSize) {
  // 6 rows of 2 values and a weight, 2 sequences, a tree and a name per row.
  const std::vector<double> values = {1, 2, 0.5, 3, 4, 1, 5, 6, 2, 7, 8, 1, 9, 10, 1, 11, 12, 3};
  const std::vector<uint64_t> lengths = {2, 4};
  const std::string newick = "((a:1,b:2):1,(c:1,d:1):2,(e:1,f:3):1);";
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f"};
  RequestData data(values);
  data.sequence_lengths = lengths;
  data.newick = newick;
  data.row_names = names;
  v1::DataShape shape;
  shape.set_rows(6);
  shape.set_cols(2);
  shape.set_weight_column(true);
  data.DescribeIn(&shape);
  for (size_t chunk : {1, 2, 5, 1000}) {
    SCOPED_TRACE(chunk);
    absl::StatusOr<std::shared_ptr<PendingData>> pending = Send(shape, data, chunk);
    ASSERT_THAT(pending, IsOk());
    std::optional<Upload> upload = (*pending)->Take();
    ASSERT_TRUE(upload.has_value());
    EXPECT_EQ(upload->data.x(1, 0), 3);
    EXPECT_EQ(upload->data.x(5, 1), 12);
    EXPECT_EQ(upload->data.weights[5], 3);
    EXPECT_THAT(upload->data.sequence_offsets, ::testing::ElementsAre(0, 2, 6));
    EXPECT_EQ(upload->newick, newick);
    EXPECT_EQ(upload->row_names, names);
  }
  EXPECT_EQ(service_.inflight_bytes(), 0u);  // every reservation released with its data
}

TEST_F(DataReceiverTest, AStreamTheHeaderDidNotDeclareIsRefusedAndHarmsNothing) {
  v1::DataShape shape;
  shape.set_rows(4);
  shape.set_cols(1);
  const std::vector<double> values = {1, 2, 3, 4};
  const std::vector<uint64_t> lengths = {4};
  RequestData data(values);
  data.sequence_lengths = lengths;  // but shape.num_sequences stays 0
  EXPECT_THAT(Send(shape, data, 100),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "more lengths than the header's shape.num_sequences (0)"));
  RequestData tree(values);
  tree.newick = "(a:1,b:1);";
  EXPECT_THAT(Send(shape, tree, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, "shape.newick_bytes (0)"));
  const std::vector<std::string> names = {"a", "b", "c", "d"};
  RequestData named(values);
  named.row_names = names;
  EXPECT_THAT(Send(shape, named, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, "shape.row_names is not set"));
  EXPECT_EQ(service_.inflight_bytes(), 0u);
}

TEST_F(DataReceiverTest, StreamsThatDoNotAddUpAreRefusedNamingTheStream) {
  const std::vector<double> values = {1, 2, 3, 4};
  v1::DataShape shape;
  shape.set_rows(4);
  shape.set_cols(1);
  shape.set_num_sequences(2);
  const std::vector<uint64_t> too_long = {3, 2}, empty = {0, 4}, one = {4};
  for (const auto& [lengths, message] : std::vector<std::pair<std::vector<uint64_t>, std::string>>{
           {too_long, "sequence 2 has length 2"},
           {empty, "sequence 1 has length 0"},
           {one, "received 1 lengths adding up to 4 rows"}}) {
    RequestData data(values);
    data.sequence_lengths = lengths;
    EXPECT_THAT(Send(shape, data, 100), StatusIs(absl::StatusCode::kInvalidArgument, message));
  }
  v1::DataShape tree_shape;
  tree_shape.set_rows(4);
  tree_shape.set_cols(1);
  tree_shape.set_newick_bytes(20);
  RequestData short_tree(values);
  short_tree.newick = "(a:1,b:1);";
  EXPECT_THAT(
      Send(tree_shape, short_tree, 100),
      StatusIs(absl::StatusCode::kInvalidArgument, "declares 20 bytes of Newick, received 10"));
  v1::DataShape named_shape;
  named_shape.set_rows(4);
  named_shape.set_cols(1);
  named_shape.set_row_names(true);
  const std::vector<std::string> three = {"a", "b", "c"};
  RequestData named(values);
  named.row_names = three;
  EXPECT_THAT(Send(named_shape, named, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, "a name for each of the 4 rows"));
  const std::vector<std::string> long_name = {"a", std::string(limits_.max_name_bytes + 1, 'x'),
                                              "c", "d"};
  named.row_names = long_name;
  EXPECT_THAT(Send(named_shape, named, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, "(--max_name_bytes)"));
  EXPECT_EQ(service_.inflight_bytes(), 0u);
}

TEST_F(DataReceiverTest, TheBudgetHoldsEveryStreamUntilTheJobIsDone) {
  const std::vector<double> values(1000, 1.0);
  const std::vector<uint64_t> lengths = {400, 600};
  const std::string newick(300, '(');
  RequestData data(values);
  data.sequence_lengths = lengths;
  data.newick = newick;
  v1::DataShape shape;
  shape.set_rows(1000);
  shape.set_cols(1);
  data.DescribeIn(&shape);
  DataReceiver receiver(&service_);
  ASSERT_THAT(receiver.Start(shape, "header.shape"), IsOk());
  EXPECT_EQ(service_.inflight_bytes(), 1000 * 8 + 3 * 8 + 300);
  ChunkCursor cursor(data, 64);
  v1::DataChunk chunk;
  while (!cursor.done()) {
    cursor.Next(&chunk);
    ASSERT_THAT(receiver.Append(chunk), IsOk());
  }
  absl::StatusOr<std::shared_ptr<PendingData>> pending = receiver.Finish();
  ASSERT_THAT(pending, IsOk());
  std::optional<Upload> upload = (*pending)->Take();
  EXPECT_EQ(service_.inflight_bytes(), 1000 * 8 + 3 * 8 + 300);  // the job still holds it
  pending->reset();
  EXPECT_EQ(service_.inflight_bytes(), 0u);
}

}  // namespace
}  // namespace emfit::server
