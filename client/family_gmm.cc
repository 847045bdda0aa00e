// The Gaussian mixture in the CLI: its flags, its data (a CSV table), its report and its
// posterior CSV.
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli_flags.h"
#include "family_cli.h"

namespace emfit::client {
namespace {

// Posterior rows as CSV: each component's responsibility, the row's log-likelihood, its most
// likely component (0-based), in input order.
class GmmPosteriorSink final : public PosteriorSink {
 public:
  GmmPosteriorSink(uint32_t k, OutFile* out) : out_(out) {
    std::string header;
    for (uint32_t c = 0; c < k; ++c) absl::StrAppend(&header, "r", c, ",");
    out_->Write(absl::StrCat(header, "log_likelihood,label\n"));
  }
  absl::Status Block(const v1::PosteriorResponse& r) override {
    const v1::Matrix& m = r.responsibilities();
    for (uint32_t i = 0; i < m.rows(); ++i) {
      std::string line;
      for (uint32_t c = 0; c < m.cols(); ++c) {
        absl::StrAppend(&line, FormatDouble(m.values(i * m.cols() + c)), ",");
      }
      absl::StrAppend(&line, FormatDouble(r.log_likelihood(i)), ",", r.labels(i), "\n");
      out_->Write(line);
    }
    rows_ += m.rows();
    return out_->ok() ? absl::OkStatus() : out_->Error();
  }
  PosteriorDone Finish() override {
    PosteriorDone done;
    done.note = absl::StrFormat("posteriors of %d rows", rows_);
    return done;
  }

 private:
  OutFile* out_;
  uint64_t rows_ = 0;
};

class GmmCli final : public FamilyCli {
 public:
  absl::string_view name() const override { return "gmm"; }

  std::vector<std::string> Flags(Command command) const override {
    switch (command) {
      case Command::kFit:
        return {"k", "covariance", "reg_covar", "init", "init_model", "fix"};
      case Command::kSelect:
        return {"k", "covariance", "reg_covar", "init"};
      default:
        return {};
    }
  }

  absl::Status CheckFlags(Command command) const override {
    if (absl::Status s = RequireDataFlag(); !s.ok()) return s;
    if (command == Command::kPosterior || command == Command::kScore) return absl::OkStatus();
    if (absl::Status s = CheckGaussianFitFlags(command, {"weights", "means", "covariances"});
        !s.ok()) {
      return s;
    }
    return ParseShortName(v1::InitMethod_descriptor(), absl::GetFlag(FLAGS_init), "--init")
        .status();
  }

  absl::StatusOr<v1::ModelSpec> SpecFromFlags() const override {
    v1::ModelSpec spec;
    v1::GaussianMixtureSpec* g = spec.mutable_gmm();
    uint32_t k = 0;
    if (absl::SimpleAtoi(absl::GetFlag(FLAGS_k), &k)) g->set_k(k);
    absl::StatusOr<v1::CovarianceType> type = ParseCovariance(absl::GetFlag(FLAGS_covariance));
    if (type.ok()) g->set_covariance_type(*type);
    Common(g);
    for (const std::string& f : absl::GetFlag(FLAGS_fix)) {
      if (f == "weights") g->set_fix_weights(true);
      if (f == "means") g->set_fix_means(true);
      if (f == "covariances") g->set_fix_covariances(true);
    }
    return spec;
  }

  absl::Status GridFromFlags(v1::SelectModelHeader* header) const override {
    Common(header->mutable_spec()->mutable_gmm());
    absl::StatusOr<std::vector<uint32_t>> ks = ParseKList(absl::GetFlag(FLAGS_k));
    if (!ks.ok()) return ks.status();
    for (uint32_t k : *ks) header->add_k(k);
    absl::StatusOr<std::vector<v1::CovarianceType>> types = CovarianceListFlag();
    if (!types.ok()) return types.status();
    for (v1::CovarianceType t : *types) header->add_covariance_types(t);
    return absl::OkStatus();
  }

  absl::StatusOr<LoadedData> LoadData(Command, const v1::Model*) const override {
    absl::StatusOr<TableData> table = LoadTableFromFlags();
    if (!table.ok()) return table.status();
    return std::move(table->loaded);
  }

  std::string FormatModel(const v1::Model& model) const override {
    const v1::GaussianMixture& g = model.gmm();
    const uint32_t k = g.means().rows();
    std::string out =
        absl::StrFormat("Gaussian mixture, k=%u, covariance %s\n", k,
                        ShortName(v1::CovarianceType_descriptor(), g.covariance_type()));
    const std::string header = FeatureHeader(model, g.means().cols());
    for (uint32_t c = 0; c < k; ++c) {
      absl::StrAppend(&out, absl::StrFormat("component %u: weight %.6f\n", c, g.weights(c)));
      absl::StrAppend(&out, header, "\n",
                      GaussianLines(g.covariance_type(), g.means(), g.covariances(), c));
    }
    if (g.covariance_type() == v1::COVARIANCE_TYPE_TIED) {
      absl::StrAppend(&out, TiedCovarianceLines(g.covariances()));
    }
    return out;
  }

  std::string CandidateHeader() const override {
    return absl::StrFormat("%-5s %-10s", "k", "covariance");
  }
  std::string CandidateLabel(const v1::Candidate& c) const override {
    return absl::StrFormat("%-5u %-10s", c.k(),
                           ShortName(v1::CovarianceType_descriptor(), c.covariance_type()));
  }

  std::unique_ptr<PosteriorSink> NewPosteriorSink(const v1::Model& model, const LoadedData&,
                                                  OutFile* out) const override {
    return std::make_unique<GmmPosteriorSink>(model.gmm().means().rows(), out);
  }

 private:
  // The template's settings shared by fit and select.
  static void Common(v1::GaussianMixtureSpec* g) {
    absl::StatusOr<int> init =
        ParseShortName(v1::InitMethod_descriptor(), absl::GetFlag(FLAGS_init), "--init");
    if (init.ok()) g->set_init(static_cast<v1::InitMethod>(*init));
    if (const auto reg = absl::GetFlag(FLAGS_reg_covar); reg.has_value()) g->set_reg_covar(*reg);
  }
};

}  // namespace

const FamilyCli& GmmFamilyCli() {
  static const auto* family = new GmmCli();
  return *family;
}

}  // namespace emfit::client
