// The data receiver's streams (values with a weight column, sequence lengths, Newick text, row
// names) as the client's ChunkCursor cuts them, and every way a client can get them wrong.
#include "data_receiver.h"

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admission.h"
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
  // A call's place in the admission.
  std::unique_ptr<Admission::Slot> Slot() {
    absl::StatusOr<std::unique_ptr<Admission::Slot>> slot = admission_.Enter("test");
    EXPECT_THAT(slot, IsOk());
    return slot.ok() ? *std::move(slot) : nullptr;
  }
  // Sends `data` cut into chunks of `chunk_values` through a fresh receiver of `shape`.
  absl::StatusOr<std::shared_ptr<PendingData>> Send(const v1::DataShape& shape,
                                                    const RequestData& data, size_t chunk_values) {
    const std::unique_ptr<Admission::Slot> slot = Slot();
    DataReceiver receiver(&limits_, slot.get());
    if (absl::Status s = receiver.Start(shape, 0, "header.shape"); !s.ok()) return s;
    ChunkCursor cursor(data, chunk_values);
    v1::DataChunk chunk;
    while (!cursor.done()) {
      cursor.Next(&chunk);
      if (absl::Status s = receiver.Append(chunk); !s.ok()) return s;
    }
    return receiver.Finish();
  }

  ServiceLimits limits_;
  Admission admission_{{/*bytes=*/uint64_t{1} << 30, /*peer_bytes=*/uint64_t{1} << 30,
                        /*peer_calls=*/8}};
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
  EXPECT_EQ(admission_.used_bytes(), 0u);  // every reservation released with its data
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
  EXPECT_EQ(admission_.used_bytes(), 0u);
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
  // A limit, like the others: RESOURCE_EXHAUSTED naming the flag.
  EXPECT_THAT(Send(named_shape, named, 100),
              StatusIs(absl::StatusCode::kResourceExhausted, "(--max_name_bytes)"));
  EXPECT_EQ(admission_.used_bytes(), 0u);
}

TEST_F(DataReceiverTest,
       TheBudgetGrowsWithTheDataAndHoldsThemAndTheWorkingMemoryUntilTheJobIsDone) {
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
  const std::unique_ptr<Admission::Slot> slot = Slot();
  DataReceiver receiver(&limits_, slot.get());
  ASSERT_THAT(receiver.Start(shape, /*working_bytes=*/5000, "header.shape"), IsOk());
  const uint64_t declared = 1000 * 8 + 3 * 8 + 300;
  EXPECT_EQ(receiver.declared_bytes(), declared);
  EXPECT_EQ(admission_.used_bytes(), 0u);  // declared, not yet sent
  ChunkCursor cursor(data, 64);
  v1::DataChunk chunk;
  uint64_t sent = 0;
  while (!cursor.done()) {
    cursor.Next(&chunk);
    sent += chunk.values_size() * 8 + chunk.sequence_lengths_size() * 8 + chunk.newick().size();
    ASSERT_THAT(receiver.Append(chunk), IsOk());
    EXPECT_GE(admission_.used_bytes(), sent);  // what arrived, and at most 1 MiB ahead
    EXPECT_LE(admission_.used_bytes(), std::min(declared, sent + (1 << 20)));
  }
  absl::StatusOr<std::shared_ptr<PendingData>> pending = receiver.Finish();
  ASSERT_THAT(pending, IsOk());
  EXPECT_EQ((*pending)->reserved_bytes(), declared + 5000);  // the data and the working memory
  std::optional<Upload> upload = (*pending)->Take();
  EXPECT_EQ(admission_.used_bytes(), declared + 5000);  // the job still holds it
  pending->reset();
  EXPECT_EQ(admission_.used_bytes(), 0u);
}

// A reactor sets its pending data in OnReadDone while OnCancel, which gRPC may run at the same
// time, drops them (job_reactor.h): whichever comes first, the data and their budget go (and
// under ThreadSanitizer, the two threads do not race).
TEST_F(DataReceiverTest, PendingDataSetWhileTheCallIsCancelledAreDroppedWhicheverComesFirst) {
  const std::vector<double> values(100, 1.0);
  v1::DataShape shape;
  shape.set_rows(100);
  shape.set_cols(1);
  for (int round = 0; round < 20; ++round) {
    absl::StatusOr<std::shared_ptr<PendingData>> pending = Send(shape, RequestData(values), 16);
    ASSERT_THAT(pending, IsOk());
    EXPECT_GT(admission_.used_bytes(), 0u);
    PendingSlot slot;
    std::thread on_read_done([&slot, p = *pending] { slot.Set(p); });
    slot.Drop();  // OnCancel
    on_read_done.join();
    EXPECT_EQ((*pending)->Take(), std::nullopt) << "round " << round;
    EXPECT_EQ(admission_.used_bytes(), 0u) << "round " << round;
  }
}

}  // namespace
}  // namespace emfit::server
