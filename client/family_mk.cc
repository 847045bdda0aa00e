// The Mk family in the CLI: a tree (--tree, Newick) and the tips' states (--tips, CSV of label
// and state), the rate structure and root prior from flags or files, the report (the rate
// matrix with state names, the expected changes, the ancestral states), the node posterior CSV
// and the summary of stochastic maps. The tips' states become likelihood rows with core's
// reader (mk::TipLikelihoods), the same the tests and the server use.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "cli_flags.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "family_cli.h"

namespace emfit::client {
namespace {

// --rates values that name a preset rather than a file.
absl::StatusOr<v1::RateModel> Preset(absl::string_view name) {
  const std::string n = absl::AsciiStrToUpper(name);
  if (n == "ER") return v1::RATE_MODEL_ER;
  if (n == "SYM") return v1::RATE_MODEL_SYM;
  if (n == "ARD") return v1::RATE_MODEL_ARD;
  return absl::NotFoundError("not a preset");
}

std::string RateModelLabel(v1::RateModel m) {
  switch (m) {
    case v1::RATE_MODEL_UNSPECIFIED:
    case v1::RATE_MODEL_ER:
      return "ER";
    case v1::RATE_MODEL_SYM:
      return "SYM";
    case v1::RATE_MODEL_ARD:
      return "ARD";
    default:
      return "custom";
  }
}

// The name of the root prior or the file of --root ("" for a file).
bool RootIsFile(const std::string& root) {
  const std::string r = absl::AsciiStrToLower(root);
  return r != "equal" && r != "stationary";
}

std::vector<std::string> RateList() {
  return absl::StrSplit(absl::GetFlag(FLAGS_rates), ',', absl::SkipEmpty());
}

// A k x k table of `m` (row-major) with the state names as row and column headings, each cell
// printed by `format` (a printf format of one double, 11 characters wide).
std::string StateTable(const std::vector<std::string>& states, const double* m,
                       const char* format = "%11.4g") {
  size_t width = 4;
  for (const std::string& s : states) width = std::max(width, s.size());
  std::string out = std::string(width + 1, ' ');
  for (const std::string& s : states) absl::StrAppend(&out, absl::StrFormat("%11s", s));
  absl::StrAppend(&out, "\n");
  const size_t k = states.size();
  char cell[64];
  for (size_t i = 0; i < k; ++i) {
    absl::StrAppend(&out, absl::StrFormat("%-*s ", static_cast<int>(width), states[i]));
    for (size_t j = 0; j < k; ++j) {
      std::snprintf(cell, sizeof(cell), format, m[i * k + j]);
      absl::StrAppend(&out, cell);
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

// "CG 0.12, GB 0.03, ..." of k values, largest first, those below `hide` left out.
std::string Shares(const std::vector<std::string>& states, const double* p, double hide = 0.005) {
  std::vector<int> order(states.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  std::vector<std::string> parts;
  for (int i : order) {
    if (p[i] >= hide) parts.push_back(absl::StrFormat("%s %.3f", states[i], p[i]));
  }
  return absl::StrJoin(parts, ", ");
}

std::vector<std::string> StatesOf(const v1::Model& model) {
  return {model.mk().state_names().begin(), model.mk().state_names().end()};
}

// The tree and the tips' labels and states, as read from --tree and --tips.
struct TreeAndTips {
  std::string newick;
  mk::Tree tree;
  std::vector<std::string> labels;
  std::vector<std::string> states;
};

absl::StatusOr<TreeAndTips> ReadTreeAndTips() {
  TreeAndTips out;
  const std::string tree_path = absl::GetFlag(FLAGS_tree);
  const std::string tips_path = absl::GetFlag(FLAGS_tips);
  absl::StatusOr<std::string> newick = ReadWholeFile(tree_path);
  if (!newick.ok()) return newick.status();
  out.newick = *std::move(newick);
  absl::StatusOr<mk::Tree> tree = mk::ParseNewick(out.newick);
  if (!tree.ok()) {
    return absl::Status(tree.status().code(),
                        absl::StrCat(tree_path, ": ", tree.status().message()));
  }
  out.tree = *std::move(tree);
  absl::StatusOr<CsvOptions> options = CsvOptionsFromFlags();
  if (!options.ok()) return options.status();
  CsvOptions& o = *options;
  o.numeric = false;
  std::string state_column = absl::GetFlag(FLAGS_state_column);
  size_t index = 0;
  const bool named = !state_column.empty() && !absl::SimpleAtoi(state_column, &index);
  if (state_column.empty()) state_column = "2";
  o.text = {"1", state_column};
  const std::string header = absl::GetFlag(FLAGS_header);
  // A tips file's cells are all text, so "auto" cannot look for numbers: the first line is a
  // header when --state_column names a column, or when its label names no tip of the tree.
  o.header = header == "yes" || (header == "auto" && named) ? HeaderMode::kYes : HeaderMode::kNo;
  absl::StatusOr<Table> table = ReadCsvFile(tips_path, o);
  if (!table.ok()) return table.status();
  out.labels = std::move(table->text[0]);
  out.states = std::move(table->text[1]);
  absl::flat_hash_set<std::string> tips(out.tree.labels.begin(),
                                        out.tree.labels.begin() + out.tree.num_tips);
  if (header == "auto" && !named && !tips.contains(out.labels[0])) {
    out.labels.erase(out.labels.begin());
    out.states.erase(out.states.begin());
    if (out.labels.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: no data rows", tips_path));
    }
  }
  // Newick turns the underscores of unquoted labels into spaces (ape keeps them): a label of
  // the file with underscores matches the tip with spaces.
  for (std::string& label : out.labels) {
    if (!tips.contains(label)) {
      std::string spaced = absl::StrReplaceAll(label, {{"_", " "}});
      if (tips.contains(spaced)) label = std::move(spaced);
    }
  }
  return out;
}

// Rows of tip likelihoods in the order of `states`; errors name the file.
absl::StatusOr<LoadedData> TipData(const TreeAndTips& in, const std::vector<std::string>& states) {
  absl::StatusOr<Eigen::MatrixXd> lik = mk::TipLikelihoods(in.labels, in.states, states);
  if (!lik.ok()) {
    return absl::Status(lik.status().code(),
                        absl::StrCat(absl::GetFlag(FLAGS_tips), ": ", lik.status().message()));
  }
  LoadedData d;
  d.shape.set_rows(lik->rows());
  d.shape.set_cols(static_cast<uint32_t>(lik->cols()));
  // The data's columns are the states: the fitted model records them as its feature names.
  for (const std::string& s : states) d.shape.add_column_names(s);
  d.shape.set_allow_missing_tips(absl::GetFlag(FLAGS_allow_missing_tips));
  d.values.reserve(lik->size());
  for (Eigen::Index i = 0; i < lik->rows(); ++i) {
    for (Eigen::Index j = 0; j < lik->cols(); ++j) d.values.push_back((*lik)(i, j));
  }
  d.newick = in.newick;
  d.row_names = in.labels;
  d.description = absl::StrFormat(
      "read %s: %d tips; %s: %d rows, %d states (%s)", absl::GetFlag(FLAGS_tree), in.tree.num_tips,
      absl::GetFlag(FLAGS_tips), in.labels.size(), states.size(), absl::StrJoin(states, ", "));
  return d;
}

// A CSV of numbers, `rows` x k, whose optional header names the states in any order: the
// values in the order of `states`. Read with --delimiter and --header as every CSV.
absl::StatusOr<std::vector<double>> ReadStateTable(const std::string& path, size_t rows,
                                                   const std::vector<std::string>& states,
                                                   absl::string_view flag) {
  absl::StatusOr<CsvOptions> options = CsvOptionsFromFlags();
  if (!options.ok()) return options.status();
  absl::StatusOr<Table> t = ReadCsvFile(path, *options);
  if (!t.ok()) return t.status();
  const size_t k = states.size();
  if (t->rows != rows || t->cols != k) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s holds %d x %d values; %d x %d are needed (k=%d states: %s)", flag,
                        path, t->rows, t->cols, rows, k, k, absl::StrJoin(states, ", ")));
  }
  std::vector<size_t> column(k);  // column of the file for each state
  for (size_t j = 0; j < k; ++j) column[j] = j;
  if (!t->column_names.empty()) {
    for (size_t j = 0; j < k; ++j) {
      const auto it = std::find(t->column_names.begin(), t->column_names.end(), states[j]);
      if (it == t->column_names.end()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: the header of %s names [%s], not the states [%s]", flag, path,
                            absl::StrJoin(t->column_names, ", "), absl::StrJoin(states, ", ")));
      }
      column[j] = static_cast<size_t>(it - t->column_names.begin());
    }
  }
  std::vector<double> out(rows * k);
  // A square table with a header is reordered in both dimensions.
  for (size_t i = 0; i < rows; ++i) {
    const size_t r = rows == k ? column[i] : i;
    for (size_t j = 0; j < k; ++j) out[i * k + j] = t->values[r * k + column[j]];
  }
  return out;
}

// Node posteriors as CSV: node (0-based: tips in Newick order, then internal nodes in the order
// of their '('; ape's number is node + 1), label, parent, branch length, the probability of
// each state, the most probable state.
class MkPosteriorSink final : public PosteriorSink {
 public:
  MkPosteriorSink(std::vector<std::string> states, OutFile* out)
      : states_(std::move(states)), out_(out) {
    out_->Write(
        absl::StrCat("node,label,parent,branch_length,", absl::StrJoin(states_, ","), ",state\n"));
  }
  absl::Status Block(const v1::PosteriorResponse& r) override {
    const v1::Matrix& m = r.responsibilities();
    const v1::MkTreeSummary& t = r.mk();
    const uint32_t width = m.cols();
    const size_t k = states_.size();
    for (uint32_t i = 0; i < m.rows(); ++i) {
      std::string line =
          absl::StrCat(r.first_row() + i, ",", Quoted(t.node_labels(i)), ",", t.parents(i), ",",
                       std::isnan(t.branch_lengths(i)) ? "" : FormatDouble(t.branch_lengths(i)));
      for (uint32_t c = 0; c < width; ++c) {
        absl::StrAppend(&line, ",", FormatDouble(m.values(i * width + c)));
      }
      const uint32_t chars = width / static_cast<uint32_t>(k);
      std::vector<std::string> best;
      for (uint32_t c = 0; c < chars; ++c) best.push_back(states_[r.labels(i * chars + c)]);
      absl::StrAppend(&line, ",", absl::StrJoin(best, "|"), "\n");
      out_->Write(line);
    }
    nodes_ += m.rows();
    tips_ = t.num_tips();
    if (t.has_expected_transitions()) {
      log_likelihood_ = t.log_likelihood();
      for (const v1::Warning& w : t.warnings()) {
        absl::StrAppend(&warnings_, "warning [", w.code(), "]: ", w.message(), "\n");
      }
    }
    return out_->ok() ? absl::OkStatus() : out_->Error();
  }
  PosteriorDone Finish() override {
    PosteriorDone done;
    done.note =
        absl::StrFormat("%sposteriors of %d nodes (%d tips, %d internal); log-likelihood %.6f",
                        warnings_, nodes_, tips_, nodes_ - tips_, log_likelihood_);
    return done;
  }

 private:
  static std::string Quoted(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
  }
  std::vector<std::string> states_;
  OutFile* out_;
  uint64_t nodes_ = 0, tips_ = 0;
  double log_likelihood_ = 0;
  std::string warnings_;
};

class MkCli final : public FamilyCli {
 public:
  absl::string_view name() const override { return "mk"; }

  std::vector<std::string> Flags(Command command) const override {
    std::vector<std::string> flags = {"tree", "tips", "state_column", "allow_missing_tips"};
    if (command == Command::kFit || command == Command::kSelect) {
      flags.insert(flags.end(),
                   {"states", "rates", "root", "estep", "mcem_tol", "max_sample_size"});
    }
    if (command == Command::kFit) flags.push_back("init_model");
    return flags;
  }

  std::vector<std::string> IgnoredFlags(Command) const override {
    return {"data", "columns", "drop", "weights", "ignore_feature_names"};
  }

  absl::Status CheckFlags(Command command) const override {
    if (absl::GetFlag(FLAGS_tree).empty() || absl::GetFlag(FLAGS_tips).empty()) {
      return absl::InvalidArgumentError(
          "--tree and --tips: an Mk model needs the tree (Newick) and the tips' states (CSV of "
          "label and state)");
    }
    if (command != Command::kFit && command != Command::kSelect) return absl::OkStatus();
    const std::vector<std::string> rates = RateList();
    if (rates.empty()) return absl::InvalidArgumentError("--rates: ER, SYM, ARD or a file");
    if (command == Command::kFit && rates.size() > 1) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--rates: fit takes one rate structure (select compares several); got '%s'",
          absl::GetFlag(FLAGS_rates)));
    }
    int files = 0;
    for (const std::string& r : rates) files += !Preset(r).ok();
    if (files > 1) {
      return absl::InvalidArgumentError("--rates: at most one index matrix file in the list");
    }
    const std::vector<std::string> states = absl::GetFlag(FLAGS_states);
    if (!states.empty() &&
        std::set<std::string>(states.begin(), states.end()).size() != states.size()) {
      return absl::InvalidArgumentError("--states: a state is named twice");
    }
    if (!states.empty() && states.size() < 2) {
      return absl::InvalidArgumentError("--states: at least 2 states");
    }
    absl::StatusOr<int> estep =
        ParseShortName(v1::EStepMethod_descriptor(), absl::GetFlag(FLAGS_estep), "--estep");
    if (!estep.ok()) return estep.status();
    if (*estep != v1::E_STEP_METHOD_MONTE_CARLO &&
        (absl::GetFlag(FLAGS_mcem_tol).has_value() ||
         absl::GetFlag(FLAGS_max_sample_size).has_value())) {
      return absl::InvalidArgumentError(
          "--mcem_tol, --max_sample_size: options of --estep=monte-carlo");
    }
    if (const auto t = absl::GetFlag(FLAGS_mcem_tol); t.has_value() && !(*t > 0)) {
      return absl::InvalidArgumentError("--mcem_tol: must be > 0");
    }
    if (const auto m = absl::GetFlag(FLAGS_max_sample_size); m.has_value() && *m < 2) {
      return absl::InvalidArgumentError("--max_sample_size: must be >= 2");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::ModelSpec> SpecFromFlags() const override {
    v1::ModelSpec spec;
    Common(spec.mutable_mk());
    absl::StatusOr<v1::RateModel> preset = Preset(absl::GetFlag(FLAGS_rates));
    spec.mutable_mk()->set_rate_model(preset.ok() ? *preset : v1::RATE_MODEL_CUSTOM);
    return spec;
  }

  absl::Status GridFromFlags(v1::SelectModelHeader* header) const override {
    Common(header->mutable_spec()->mutable_mk());
    for (const std::string& r : RateList()) {
      absl::StatusOr<v1::RateModel> preset = Preset(r);
      header->add_rate_models(preset.ok() ? *preset : v1::RATE_MODEL_CUSTOM);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<LoadedData> LoadData(Command, const v1::Model* model) const override {
    absl::StatusOr<TreeAndTips> in = ReadTreeAndTips();
    if (!in.ok()) return in.status();
    std::vector<std::string> states;
    if (model != nullptr) {
      states = StatesOf(*model);
    } else {
      states = absl::GetFlag(FLAGS_states);
      if (states.empty()) states = mk::StateNames(in->states);
      if (states.size() < 2) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: the tips hold %d state%s (%s); an Mk model needs at least 2 (or name them with "
            "--states)",
            absl::GetFlag(FLAGS_tips), states.size(), states.size() == 1 ? "" : "s",
            absl::StrJoin(states, ", ")));
      }
    }
    absl::StatusOr<LoadedData> data = TipData(*in, states);
    if (!data.ok() || model != nullptr) return data;
    absl::Status s = SpecFromData(*data, &data->spec_from_data);
    if (!s.ok()) return s;
    return data;
  }

  std::string FormatModel(const v1::Model& model) const override {
    const v1::MkModel& m = model.mk();
    const std::vector<std::string> states = StatesOf(model);
    const int k = static_cast<int>(states.size());
    Eigen::MatrixXi index(k, k);
    int rates = 0;
    for (int i = 0; i < k * k && i < m.index().values_size(); ++i) {
      index(i / k, i % k) = static_cast<int>(m.index().values(i));
      rates = std::max(rates, index(i / k, i % k));
    }
    std::string structure = "custom index";
    for (mk::RateModel preset : {mk::RateModel::kER, mk::RateModel::kSYM, mk::RateModel::kARD}) {
      if (k >= 2 && index == mk::RateIndex(preset, k)) structure = mk::RateModelName(preset);
    }
    std::string root = ShortName(v1::RootPrior_descriptor(), m.root());
    if (m.root() == v1::ROOT_PRIOR_GIVEN) {
      root = absl::StrCat("given (", Shares(states, m.root_probs().data(), 0), ")");
    }
    std::string out = absl::StrFormat("Mk model: %d states, %s rates (%d free), root prior %s\n", k,
                                      structure, rates, root);
    // Rates at the lower bound (q_min, ~1e-10) are shown as 0, as phytools shows them.
    std::vector<double> q(m.q().values().begin(), m.q().values().end());
    double largest = 0;
    for (double v : q) largest = std::max(largest, std::abs(v));
    bool hidden = false;
    for (double& v : q) {
      if (v != 0 && std::abs(v) < 1e-6 * largest) v = 0, hidden = true;
    }
    absl::StrAppend(&out, "rate matrix Q (row: from, column: to; per unit of branch length)\n",
                    StateTable(states, q.data()),
                    hidden ? "(entries below 1e-6 of the largest, e.g. rates at their lower bound, "
                             "are shown as 0)\n"
                           : "");
    if (structure == "custom index") {
      absl::StrAppend(&out, "index (cells with the same number share a rate, 0: forbidden)\n",
                      StateTable(states, m.index().values().data(), "%11g"));
    }
    return out;
  }

  std::string FormatResult(const v1::FitResult& result) const override {
    if (!result.has_mk()) return "";
    const v1::MkFitResult& r = result.mk();
    const v1::MkTreeSummary& t = r.tree();
    const std::vector<std::string> states = StatesOf(result.model());
    const size_t k = states.size();
    std::string out;
    if (r.rate_standard_errors_size() > 0) {
      // Each rate's Monte Carlo error in the cells that share it.
      std::vector<double> se(k * k, 0.0);
      const v1::Matrix& index = result.model().mk().index();
      for (size_t c = 0; c < k * k && c < static_cast<size_t>(index.values_size()); ++c) {
        const int p = static_cast<int>(index.values(c));
        if (p > 0 && p <= r.rate_standard_errors_size()) se[c] = r.rate_standard_errors(p - 1);
      }
      absl::StrAppend(&out, "Monte Carlo standard errors of the rates\n",
                      StateTable(states, se.data()));
    }
    if (t.has_expected_transitions()) {
      double total = 0;
      for (double v : t.expected_transitions().values()) total += v;
      absl::StrAppend(&out,
                      absl::StrFormat("expected changes over the tree: %.2f (row: from, column: "
                                      "to)\n",
                                      total),
                      StateTable(states, t.expected_transitions().values().data(), "%11.3f"));
      std::vector<std::string> times;
      for (size_t i = 0; i < k && i < static_cast<size_t>(t.expected_times_size()); ++i) {
        times.push_back(absl::StrFormat("%s %.2f", states[i], t.expected_times(i)));
      }
      absl::StrAppend(&out, "expected time in each state: ", absl::StrJoin(times, ", "), "\n");
    }
    const v1::Matrix& p = t.node_probabilities();
    if (p.rows() > t.num_tips() && p.cols() == k) {
      const uint32_t tips = t.num_tips(), internal = p.rows() - tips;
      absl::StrAppend(&out,
                      absl::StrFormat("ancestral states (marginal posteriors of the %d internal "
                                      "nodes; `emfit posterior` writes every node):\n",
                                      internal),
                      "  root: ", Shares(states, p.values().data() + tips * k), "\n");
      std::vector<int> count(k, 0);
      int sure = 0;
      for (uint32_t v = tips; v < p.rows(); ++v) {
        const double* row = p.values().data() + v * k;
        const size_t best = std::max_element(row, row + k) - row;
        ++count[best];
        sure += row[best] >= 0.95;
      }
      std::vector<std::string> parts;
      for (size_t i = 0; i < k; ++i) {
        if (count[i] > 0) parts.push_back(absl::StrFormat("%s %d", states[i], count[i]));
      }
      absl::StrAppend(&out, "  most probable state: ", absl::StrJoin(parts, ", "),
                      absl::StrFormat("; at least 0.95 at %d of %d nodes\n", sure, internal));
    }
    return out;
  }

  std::string CandidateHeader() const override { return absl::StrFormat("%-8s", "rates"); }
  std::string CandidateLabel(const v1::Candidate& c) const override {
    return absl::StrFormat("%-8s", RateModelLabel(c.spec().mk().rate_model()));
  }

  std::unique_ptr<PosteriorSink> NewPosteriorSink(const v1::Model& model, const LoadedData&,
                                                  OutFile* out) const override {
    return std::make_unique<MkPosteriorSink>(StatesOf(model), out);
  }

  bool DrawsHistories() const override { return true; }

  std::string FormatHistories(const v1::Model& model,
                              const v1::HistoriesSummary& s) const override {
    const std::vector<std::string> states = StatesOf(model);
    const size_t k = states.size();
    double total = 0;
    for (double v : s.mean_transitions().values()) total += v;
    std::string out = absl::StrFormat(
        "%d stochastic maps; mean number of changes per map: %.2f\nmean changes per map (row: "
        "from, column: to)\n",
        s.count(), total);
    absl::StrAppend(&out, StateTable(states, s.mean_transitions().values().data(), "%11.3f"));
    std::vector<std::string> times;
    for (size_t i = 0; i < k && i < static_cast<size_t>(s.mean_times_size()); ++i) {
      times.push_back(absl::StrFormat("%s %.2f", states[i], s.mean_times(i)));
    }
    absl::StrAppend(&out, "mean time in each state: ", absl::StrJoin(times, ", "), "\n");
    const v1::Matrix& f = s.node_frequencies();
    if (f.rows() > s.num_tips() && f.cols() == k) {
      absl::StrAppend(&out, "root state in the maps: ",
                      Shares(states, f.values().data() + s.num_tips() * k), "\n");
    }
    return out;
  }

 private:
  // Completes the spec of fit and select with what the data say: the states, and the rate
  // index matrix or root prior read from files against them.
  static absl::Status SpecFromData(const LoadedData& data, v1::ModelSpec* spec) {
    v1::MkSpec* mk = spec->mutable_mk();
    const std::vector<std::string> states(data.shape.column_names().begin(),
                                          data.shape.column_names().end());
    mk->mutable_state_names()->Assign(states.begin(), states.end());
    const size_t k = states.size();
    for (const std::string& r : RateList()) {
      if (Preset(r).ok()) continue;
      absl::StatusOr<std::vector<double>> index = ReadStateTable(r, k, states, "--rates");
      if (!index.ok()) return index.status();
      mk->mutable_index()->set_rows(static_cast<uint32_t>(k));
      mk->mutable_index()->set_cols(static_cast<uint32_t>(k));
      mk->mutable_index()->mutable_values()->Assign(index->begin(), index->end());
    }
    if (const std::string root = absl::GetFlag(FLAGS_root); RootIsFile(root)) {
      absl::StatusOr<std::vector<double>> probs = ReadStateTable(root, 1, states, "--root");
      if (!probs.ok()) return probs.status();
      mk->set_root(v1::ROOT_PRIOR_GIVEN);
      mk->mutable_root_probs()->Assign(probs->begin(), probs->end());
    }
    return absl::OkStatus();
  }

  // The template's settings shared by fit and select (the states come with the data).
  static void Common(v1::MkSpec* m) {
    const std::string root = absl::AsciiStrToLower(absl::GetFlag(FLAGS_root));
    m->set_root(root == "stationary" ? v1::ROOT_PRIOR_STATIONARY : v1::ROOT_PRIOR_EQUAL);
    absl::StatusOr<int> estep =
        ParseShortName(v1::EStepMethod_descriptor(), absl::GetFlag(FLAGS_estep), "--estep");
    if (estep.ok()) m->set_estep(static_cast<v1::EStepMethod>(*estep));
    if (const auto t = absl::GetFlag(FLAGS_mcem_tol); t.has_value()) m->mutable_mcem()->set_tol(*t);
    if (const auto n = absl::GetFlag(FLAGS_max_sample_size); n.has_value()) {
      m->mutable_mcem()->set_max_sample_size(static_cast<uint32_t>(*n));
    }
  }
};

}  // namespace

const FamilyCli& MkFamilyCli() {
  static const auto* family = new MkCli();
  return *family;
}

}  // namespace emfit::client
