// The hidden Markov model in the CLI: its flags, its data (a CSV table cut into sequences by
// --sequence_column; categorical symbols as names mapped to indices), its report and its
// posterior CSV (and the per-sequence summary of --summary_out).
#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli_flags.h"
#include "family_cli.h"
#include "model_io.h"

namespace emfit::client {
namespace {

absl::StatusOr<v1::EmissionType> Emission(absl::string_view name) {
  absl::StatusOr<int> v = ParseShortName(v1::EmissionType_descriptor(), name, "--emission");
  if (!v.ok()) return v.status();
  return static_cast<v1::EmissionType>(*v);
}

// The initialisations of an HMM: from the data (kmeans) or random.
absl::StatusOr<v1::InitMethod> Init(absl::string_view name) {
  absl::StatusOr<int> v = ParseShortName(v1::InitMethod_descriptor(), name, "--init");
  if (!v.ok()) return v.status();
  if (*v != v1::INIT_METHOD_KMEANS && *v != v1::INIT_METHOD_RANDOM) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--init: hidden Markov models start from kmeans (the data) or random; got '%s'", name));
  }
  return static_cast<v1::InitMethod>(*v);
}

// The symbols' names of categorical data without a model: sorted as numbers when they all are
// integers (0, 1, 2, 10), else as text.
std::vector<std::string> SortedSymbols(const std::vector<std::string>& cells) {
  std::vector<std::string> names;
  absl::flat_hash_map<std::string, int> seen;
  for (const std::string& c : cells) {
    if (!IsMissing(c) && seen.emplace(c, 0).second) names.push_back(c);
  }
  std::vector<int64_t> numbers(names.size());
  bool integers = true;
  for (size_t m = 0; m < names.size() && integers; ++m) {
    integers = absl::SimpleAtoi(names[m], &numbers[m]);
  }
  if (integers) {
    std::vector<size_t> order(names.size());
    for (size_t m = 0; m < order.size(); ++m) order[m] = m;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return numbers[a] != numbers[b] ? numbers[a] < numbers[b] : names[a] < names[b];
    });
    std::vector<std::string> sorted;
    for (size_t m : order) sorted.push_back(names[m]);
    return sorted;
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Cuts the rows into sequences at changes of `ids`; a sequence whose rows are not consecutive
// is an error naming its rows.
absl::Status Sequences(const std::vector<std::string>& ids, const std::string& column,
                       LoadedData* d) {
  absl::flat_hash_map<std::string, size_t> first_row;  // of each sequence seen
  for (size_t i = 0; i < ids.size(); ++i) {
    if (IsMissing(ids[i])) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--sequence_column=%s: row %d has no sequence id", column, i + 1));
    }
    if (i > 0 && ids[i] == ids[i - 1]) {
      ++d->sequence_lengths.back();
      continue;
    }
    auto [it, inserted] = first_row.emplace(ids[i], i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--sequence_column=%s: sequence '%s' starts at row %d and appears again at row %d "
          "after other sequences; the rows of a sequence must be consecutive, in time order",
          column, ids[i], it->second + 1, i + 1));
    }
    d->sequence_names.push_back(ids[i]);
    d->sequence_lengths.push_back(1);
  }
  return absl::OkStatus();
}

// Posterior rows as CSV: the sequence, the step within it (1-based), each state's probability,
// the state on the Viterbi path (0-based); the per-sequence figures to --summary_out.
class HmmPosteriorSink final : public PosteriorSink {
 public:
  HmmPosteriorSink(uint32_t k, const LoadedData& data, OutFile* out)
      : out_(out), names_(data.sequence_names), lengths_(data.sequence_lengths) {
    if (lengths_.empty()) lengths_.push_back(data.shape.rows());
    std::string header = "sequence,step,";
    for (uint32_t c = 0; c < k; ++c) absl::StrAppend(&header, "p", c, ",");
    out_->Write(absl::StrCat(header, "state\n"));
  }

  absl::Status Block(const v1::PosteriorResponse& r) override {
    const v1::Matrix& m = r.responsibilities();
    for (uint32_t i = 0; i < m.rows(); ++i) {
      while (sequence_ < lengths_.size() && step_ == lengths_[sequence_]) {
        ++sequence_;
        step_ = 0;
      }
      std::string line = absl::StrCat(Name(sequence_), ",", ++step_, ",");
      for (uint32_t c = 0; c < m.cols(); ++c) {
        absl::StrAppend(&line, FormatDouble(m.values(i * m.cols() + c)), ",");
      }
      absl::StrAppend(&line, r.labels(i), "\n");
      out_->Write(line);
    }
    rows_ += m.rows();
    const v1::HmmSequencePosteriors& s = r.hmm();
    for (int j = 0; j < s.log_likelihood_size(); ++j) {
      log_likelihood_.push_back(s.log_likelihood(j));
      viterbi_.push_back(s.viterbi_log_probability(j));
    }
    return out_->ok() ? absl::OkStatus() : out_->Error();
  }

  PosteriorDone Finish() override {
    PosteriorDone done;
    done.note = absl::StrFormat("posteriors of %d steps in %d sequence%s", rows_, lengths_.size(),
                                lengths_.size() == 1 ? "" : "s");
    done.summary = "sequence,steps,log_likelihood,viterbi_log_probability\n";
    for (size_t q = 0; q < log_likelihood_.size() && q < lengths_.size(); ++q) {
      absl::StrAppend(&done.summary, Name(q), ",", lengths_[q], ",",
                      FormatDouble(log_likelihood_[q]), ",", FormatDouble(viterbi_[q]), "\n");
    }
    done.summary_what = "each sequence's log-likelihood";
    return done;
  }

 private:
  std::string Name(size_t q) const { return q < names_.size() ? names_[q] : absl::StrCat(q + 1); }

  OutFile* out_;
  std::vector<std::string> names_;
  std::vector<uint64_t> lengths_;
  size_t sequence_ = 0;
  uint64_t step_ = 0;
  uint64_t rows_ = 0;
  std::vector<double> log_likelihood_, viterbi_;
};

class HmmCli final : public FamilyCli {
 public:
  absl::string_view name() const override { return "hmm"; }

  std::vector<std::string> Flags(Command command) const override {
    switch (command) {
      case Command::kFit:
        return {"k",    "emission",   "covariance", "reg_covar",
                "init", "init_model", "fix",        "sequence_column"};
      case Command::kSelect:
        return {"k", "emission", "covariance", "reg_covar", "init", "sequence_column"};
      case Command::kPosterior:
        return {"sequence_column", "summary_out"};
      case Command::kScore:
        return {"sequence_column"};
      case Command::kSimmap:
        break;  // Mk models only
    }
    return {};
  }

  absl::Status CheckFlags(Command command) const override {
    if (absl::Status s = RequireDataFlag(); !s.ok()) return s;
    if (command == Command::kPosterior || command == Command::kScore) return absl::OkStatus();
    if (absl::Status s = Emission(absl::GetFlag(FLAGS_emission)).status(); !s.ok()) return s;
    if (absl::Status s = CheckGaussianFitFlags(command, {"start", "transitions", "emissions"});
        !s.ok()) {
      return s;
    }
    return Init(absl::GetFlag(FLAGS_init)).status();
  }

  // Only Gaussian emissions have covariances.
  std::vector<std::string> IgnoredFlags(Command command) const override {
    if ((command == Command::kFit || command == Command::kSelect) && !Gaussian()) {
      return {"covariance", "reg_covar"};
    }
    return {};
  }

  std::string Variant() const override {
    return absl::StrCat("--family=hmm --emission=", absl::GetFlag(FLAGS_emission));
  }

  absl::StatusOr<v1::ModelSpec> SpecFromFlags() const override {
    v1::ModelSpec spec;
    v1::HiddenMarkovModelSpec* h = spec.mutable_hmm();
    uint32_t k = 0;
    if (absl::SimpleAtoi(absl::GetFlag(FLAGS_k), &k)) h->set_k(k);
    Common(h);
    if (h->emission() == v1::EMISSION_TYPE_GAUSSIAN) {
      absl::StatusOr<v1::CovarianceType> type = ParseCovariance(absl::GetFlag(FLAGS_covariance));
      if (type.ok()) h->set_covariance_type(*type);
    }
    for (const std::string& f : absl::GetFlag(FLAGS_fix)) {
      if (f == "start") h->set_fix_start(true);
      if (f == "transitions") h->set_fix_transitions(true);
      if (f == "emissions") h->set_fix_emissions(true);
    }
    return spec;
  }

  absl::Status GridFromFlags(v1::SelectModelHeader* header) const override {
    v1::HiddenMarkovModelSpec* h = header->mutable_spec()->mutable_hmm();
    Common(h);
    absl::StatusOr<std::vector<uint32_t>> ks = ParseKList(absl::GetFlag(FLAGS_k));
    if (!ks.ok()) return ks.status();
    for (uint32_t k : *ks) header->add_k(k);
    if (h->emission() == v1::EMISSION_TYPE_GAUSSIAN) {
      absl::StatusOr<std::vector<v1::CovarianceType>> types = CovarianceListFlag();
      if (!types.ok()) return types.status();
      for (v1::CovarianceType t : *types) header->add_covariance_types(t);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<LoadedData> LoadData(Command command, const v1::Model* model) const override {
    // The emission and, for categorical data, the symbols' names: the model's (posterior,
    // score), the starting model's (fit --init_model), or the data's.
    std::optional<v1::Model> start;
    if (command == Command::kFit && !absl::GetFlag(FLAGS_init_model).empty()) {
      absl::StatusOr<v1::Model> m = ReadModelJson(absl::GetFlag(FLAGS_init_model));
      if (!m.ok()) return m.status();
      start = *std::move(m);
      model = &*start;
    }
    bool categorical = false;
    if (model != nullptr) {
      if (!model->has_hmm()) {
        return absl::InvalidArgumentError("--init_model: not a hidden Markov model");
      }
      categorical = model->hmm().has_categorical();
    } else {
      absl::StatusOr<v1::EmissionType> e = Emission(absl::GetFlag(FLAGS_emission));
      if (!e.ok()) return e.status();
      categorical = *e == v1::EMISSION_TYPE_CATEGORICAL;
    }
    const std::string column = absl::GetFlag(FLAGS_sequence_column);
    std::vector<std::string> text;
    if (!column.empty()) text.push_back(column);
    absl::StatusOr<TableData> read = LoadTableFromFlags(text, categorical);
    if (!read.ok()) return read.status();
    const Table& t = read->table;
    LoadedData d = std::move(read->loaded);
    if (!column.empty()) {
      if (absl::Status s = Sequences(t.text[0], column, &d); !s.ok()) return s;
    }
    std::string what = absl::StrFormat("%d column%s", t.features, t.features == 1 ? "" : "s");
    if (categorical) {
      const size_t first = column.empty() ? 0 : 1;
      if (t.text.size() != first + 1) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "categorical emissions read one column of symbols; the data have %d (%s): choose "
            "one with --columns",
            t.text.size() - first,
            absl::StrJoin(t.text_names.begin() + static_cast<std::ptrdiff_t>(first),
                          t.text_names.end(), ", ")));
      }
      absl::StatusOr<std::vector<std::string>> names = Symbols(t.text[first], model);
      if (!names.ok()) return names.status();
      absl::Status coded = Encode(t, first, *names, &d);
      if (!coded.ok()) return coded;
      if (model == nullptr) {
        v1::HiddenMarkovModelSpec* h = d.spec_from_data.mutable_hmm();
        h->set_n_symbols(static_cast<uint32_t>(names->size()));
        for (const std::string& n : *names) h->add_symbols(n);
      }
      what =
          absl::StrFormat("symbols in column %s (%d distinct)", t.text_names[first], names->size());
    }
    const std::string path = absl::GetFlag(FLAGS_data);
    d.description = absl::StrFormat(
        "read %s: %d rows in %d sequence%s, %s%s", path == "-" ? "standard input" : path, t.rows,
        d.sequence_lengths.empty() ? 1 : d.sequence_lengths.size(),
        d.sequence_lengths.size() == 1 || d.sequence_lengths.empty() ? "" : "s", what,
        d.shape.weight_column() ? " and a column of weights" : "");
    return d;
  }

  std::string FormatModel(const v1::Model& model) const override {
    const v1::HiddenMarkovModel& h = model.hmm();
    const int k = h.startprob_size();
    std::string kind;
    if (h.has_gaussian()) {
      kind = absl::StrFormat(
          "Gaussian emissions, covariance %s",
          ShortName(v1::CovarianceType_descriptor(), h.gaussian().covariance_type()));
    } else if (h.has_categorical()) {
      kind = absl::StrFormat("categorical emissions, %d symbols",
                             h.categorical().probabilities().cols());
    } else {
      kind = "Poisson emissions";
    }
    std::string out = absl::StrFormat("Hidden Markov model, k=%d, %s\n", k, kind);
    absl::StrAppend(&out, "start probabilities\n");
    for (int i = 0; i < k; ++i) {
      absl::StrAppend(&out, absl::StrFormat("  state %-3d %10.6f\n", i, h.startprob(i)));
    }
    absl::StrAppend(&out, "transition probabilities (row: from, column: to)\n          ");
    for (int j = 0; j < k; ++j)
      absl::StrAppend(&out, absl::StrFormat("%12s", absl::StrCat("to ", j)));
    absl::StrAppend(&out, "\n");
    for (int i = 0; i < k; ++i) {
      absl::StrAppend(&out, absl::StrFormat("  from %-3d", i));
      for (int j = 0; j < k; ++j) {
        absl::StrAppend(&out, absl::StrFormat("%12.6f", h.transmat().values(i * k + j)));
      }
      absl::StrAppend(&out, "\n");
    }
    if (h.has_gaussian()) {
      const v1::GaussianEmissions& g = h.gaussian();
      const std::string header = FeatureHeader(model, g.means().cols());
      for (int c = 0; c < k; ++c) {
        absl::StrAppend(&out, absl::StrFormat("state %d emits\n", c), header, "\n",
                        GaussianLines(g.covariance_type(), g.means(), g.covariances(), c));
      }
      if (g.covariance_type() == v1::COVARIANCE_TYPE_TIED) {
        absl::StrAppend(&out, TiedCovarianceLines(g.covariances()));
      }
    } else if (h.has_categorical()) {
      const v1::Matrix& p = h.categorical().probabilities();
      absl::StrAppend(&out, "emission probabilities (row: state, column: symbol)\n");
      constexpr uint32_t kShown = 20;
      std::string line = "          ";
      for (uint32_t m = 0; m < std::min(p.cols(), kShown); ++m) {
        const std::string name = m < static_cast<uint32_t>(h.categorical().symbols_size())
                                     ? h.categorical().symbols(m)
                                     : absl::StrCat(m);
        absl::StrAppend(&line, absl::StrFormat("%12s", name.substr(0, 11)));
      }
      absl::StrAppend(&out, line, "\n");
      for (int c = 0; c < k; ++c) {
        absl::StrAppend(&out, absl::StrFormat("  state %-3d", c));
        for (uint32_t m = 0; m < std::min(p.cols(), kShown); ++m) {
          absl::StrAppend(&out, absl::StrFormat("%12.6f", p.values(c * p.cols() + m)));
        }
        absl::StrAppend(&out, "\n");
      }
      if (p.cols() > kShown) {
        absl::StrAppend(&out, absl::StrFormat("  (the first %d of %d symbols; all in --out)\n",
                                              kShown, p.cols()));
      }
    } else {
      const v1::Matrix& r = h.poisson().rates();
      absl::StrAppend(&out, "Poisson rates (row: state)\n", FeatureHeader(model, r.cols()), "\n");
      for (int c = 0; c < k; ++c) {
        absl::StrAppend(&out, absl::StrFormat("  state %-2d", c), MatrixRow(r, c), "\n");
      }
    }
    return out;
  }

  std::string CandidateHeader() const override {
    return Gaussian() ? absl::StrFormat("%-5s %-10s", "k", "covariance")
                      : absl::StrFormat("%-5s", "k");
  }
  std::string CandidateLabel(const v1::Candidate& c) const override {
    if (!Gaussian()) return absl::StrFormat("%-5u", c.k());
    return absl::StrFormat("%-5u %-10s", c.k(),
                           ShortName(v1::CovarianceType_descriptor(), c.covariance_type()));
  }

  std::unique_ptr<PosteriorSink> NewPosteriorSink(const v1::Model& model, const LoadedData& data,
                                                  OutFile* out) const override {
    return std::make_unique<HmmPosteriorSink>(static_cast<uint32_t>(model.hmm().startprob_size()),
                                              data, out);
  }

 private:
  // The template's settings shared by fit and select.
  static void Common(v1::HiddenMarkovModelSpec* h) {
    absl::StatusOr<v1::EmissionType> emission = Emission(absl::GetFlag(FLAGS_emission));
    if (emission.ok()) h->set_emission(*emission);
    absl::StatusOr<v1::InitMethod> init = Init(absl::GetFlag(FLAGS_init));
    if (init.ok()) h->set_init(*init);
    if (const auto reg = absl::GetFlag(FLAGS_reg_covar); reg.has_value()) h->set_reg_covar(*reg);
  }

  static bool Gaussian() {
    absl::StatusOr<v1::EmissionType> e = Emission(absl::GetFlag(FLAGS_emission));
    return e.ok() && *e == v1::EMISSION_TYPE_GAUSSIAN;
  }

  // The symbols' names: the model's (its categorical emissions; a model without names has the
  // symbols 0 .. M-1), or those of the data.
  static absl::StatusOr<std::vector<std::string>> Symbols(const std::vector<std::string>& cells,
                                                          const v1::Model* model) {
    if (model == nullptr) return SortedSymbols(cells);
    if (!model->hmm().has_categorical()) {
      return absl::InvalidArgumentError("the model's emissions are not categorical");
    }
    const v1::CategoricalEmissions& c = model->hmm().categorical();
    std::vector<std::string> names(c.symbols().begin(), c.symbols().end());
    if (names.empty()) {
      for (uint32_t m = 0; m < c.probabilities().cols(); ++m) names.push_back(absl::StrCat(m));
    }
    return names;
  }

  // The values streamed for categorical data: each row's symbol index (NaN: missing), then
  // its weight. A symbol the names do not hold is an error naming the row.
  static absl::Status Encode(const Table& t, size_t column, const std::vector<std::string>& names,
                             LoadedData* d) {
    absl::flat_hash_map<std::string, double> index;
    for (size_t m = 0; m < names.size(); ++m) index.emplace(names[m], static_cast<double>(m));
    const bool weighted = d->shape.weight_column();
    std::vector<double> values;
    values.reserve(t.rows * (weighted ? 2 : 1));
    for (size_t i = 0; i < t.rows; ++i) {
      const std::string& cell = t.text[column][i];
      if (IsMissing(cell)) {
        values.push_back(std::numeric_limits<double>::quiet_NaN());
      } else {
        auto it = index.find(cell);
        if (it == index.end()) {
          const size_t shown = std::min<size_t>(names.size(), 10);
          return absl::InvalidArgumentError(absl::StrFormat(
              "row %d: symbol '%s' is not one of the model's %d symbols (%s%s)", i + 1, cell,
              names.size(), absl::StrJoin(names.begin(), names.begin() + shown, ", "),
              shown < names.size() ? ", ..." : ""));
        }
        values.push_back(it->second);
      }
      if (weighted) values.push_back(t.values[i * t.cols + t.features]);
    }
    d->values = std::move(values);
    d->shape.set_cols(1);
    d->shape.clear_column_names();
    if (t.header) d->shape.add_column_names(t.text_names[column]);
    return absl::OkStatus();
  }
};

}  // namespace

const FamilyCli& HmmFamilyCli() {
  static const auto* family = new HmmCli();
  return *family;
}

}  // namespace emfit::client
