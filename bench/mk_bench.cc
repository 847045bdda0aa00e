// emfit_mk_bench: the emfit side of the Mk comparison (bench/compare --family=mk, which runs
// phytools on the same data in the same run). One mode per call, one JSON line on stdout; one
// thread.
//
//   emfit_mk_bench --mode=fit --tree=T.nwk --tips=T.csv --rates=ARD [--acceleration=squarem]
//                  [--tol=1e-10] [--repeats=5] [--q_min=0] [--n_init=1]
//       exact-EM fit; median wall seconds, iterations, log-likelihood, rates
//   emfit_mk_bench --mode=simmap --tree --tips --rates=ER --n=1000 [--sampler=auto] [--q=RATE]
//       fits the model (or takes the ER rate --q), then draws n stochastic maps and writes each
//       as a SIMMAP line (to a string, as make.simmap builds its objects): seconds per map
//   emfit_mk_bench --mode=short_tree --tree --tips --out_tree=S.nwk --out_tips=S.csv [--eps=1e-3]
//       writes a tree with many very short branches: every tip becomes a cherry of two tips eps
//       apart whose states differ (the second takes the next state)
//   emfit_mk_bench --mode=mcem --tree --tips --rates=SYM --rao_blackwell=1 [--seed=1]
//       Monte Carlo EM from the default start: the histories drawn and the seconds until the
//       exact log-likelihood is within 0.01 of the exact-EM optimum, and at the stop
//   emfit_mk_bench --mode=newick [--tips_count=100000] [--repeats=5]
//       parses a caterpillar and a balanced tree of that many tips: median seconds each
//   emfit_mk_bench --mode=integrals --tree --tips --rates=SYM [--repeats=20]
//       exact E-step with the branch integrals by the eigendecomposition and by Van Loan's
//       block exponential: seconds per E-step and the largest difference of the expectations
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "emfit/em/observer.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "mk/family.h"
#include "mk/model.h"
#include "mk/pruning.h"

namespace emfit::bench {
namespace {

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) Die("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Problem {
  mk::Tree tree;
  mk::MkTips tips;
  std::vector<std::string> labels, states, names;
};

// The tree and a label,state CSV with a header line.
Problem Load(const std::string& tree_path, const std::string& tips_path) {
  Problem p;
  absl::StatusOr<mk::Tree> tree = mk::ParseNewick(ReadText(tree_path));
  if (!tree.ok()) Die(tree.status().ToString());
  p.tree = *std::move(tree);
  std::istringstream csv(ReadText(tips_path));
  std::string line;
  std::getline(csv, line);
  while (std::getline(csv, line)) {
    if (line.empty()) continue;
    const size_t comma = line.find(',');
    if (comma == std::string::npos) Die(tips_path + ": expected label,state lines");
    p.labels.push_back(line.substr(0, comma));
    p.states.push_back(line.substr(comma + 1));
  }
  p.names = mk::StateNames(p.states);
  absl::StatusOr<Eigen::MatrixXd> lik = mk::TipLikelihoods(p.labels, p.states, p.names);
  if (!lik.ok()) Die(lik.status().ToString());
  p.tips.labels = p.labels;
  p.tips.likelihoods = *lik;
  return p;
}

mk::MkSpec Spec(const Problem& p, const std::string& rates) {
  mk::MkSpec spec;
  spec.state_names = p.names;
  absl::StatusOr<mk::RateModel> model = mk::ParseRateModel(rates);
  if (!model.ok()) Die(model.status().ToString());
  spec.rates = *model;
  return spec;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::StatusOr<mk::MkFitResult> ExactFit(const Problem& p, const mk::MkSpec& spec, double tol,
                                         bool squarem, int n_init = 1) {
  FitOptions options;
  options.n_init = n_init;
  options.tol = tol;
  options.max_iter = 1000000;
  options.acceleration = squarem ? Acceleration::kSquarem : Acceleration::kNone;
  return mk::Fit(p.tree, p.tips, spec, options);
}

int FitMode(Flags& flags) {
  const Problem p = Load(flags.Str("tree"), flags.Str("tips"));
  const std::string rates = flags.Str("rates");
  const bool squarem = flags.Str("acceleration", "squarem") == "squarem";
  const double tol = flags.Double("tol", "1e-10");
  const int repeats = static_cast<int>(flags.Int("repeats", 5));
  const int n_init = static_cast<int>(flags.Int("n_init", 1));
  mk::MkSpec spec = Spec(p, rates);
  spec.q_min = flags.Double("q_min", "0");
  flags.Check();
  std::vector<double> seconds;
  absl::StatusOr<mk::MkFitResult> fit;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = NowSeconds();
    fit = ExactFit(p, spec, tol, squarem, n_init);
    seconds.push_back(NowSeconds() - t0);
    if (!fit.ok()) Die(fit.status().ToString());
  }
  const Eigen::VectorXd q = fit->params.Rates();
  std::printf(
      "{\"mode\": \"fit\", \"rates\": \"%s\", \"acceleration\": \"%s\", \"tol\": %g, "
      "\"n_init\": %d, \"q_min\": %g, "
      "\"seconds\": %s, \"median_seconds\": %s, \"iterations\": %d, \"log_likelihood\": %s, "
      "\"num_rates\": %d, \"rate_values\": %s}\n",
      rates.c_str(), squarem ? "squarem" : "none", tol, n_init, spec.q_min,
      JsonList(seconds).c_str(), Exact(Median(seconds)).c_str(), fit->summary.iterations,
      Exact(fit->summary.log_likelihood).c_str(), static_cast<int>(q.size()),
      JsonList(std::vector<double>(q.data(), q.data() + q.size())).c_str());
  return 0;
}

// Draws n maps of `p` under `params`, formats each; returns seconds.
double DrawMaps(const Problem& p, const mk::MkParams& params, int64_t n, uint64_t seed,
                mk::PathSampler sampler, int64_t* changes) {
  size_t bytes = 0;
  *changes = 0;
  const double t0 = NowSeconds();
  const absl::Status s = mk::SampleHistories(
      params, p.tree, p.tips, n, seed, mk::SimmapOptions{sampler}, {},
      [&](int64_t, const mk::StochasticMap& map) {
        absl::StatusOr<std::string> line = mk::WriteSimmap(p.tree, map, params.state_names);
        if (!line.ok()) return line.status();
        bytes += line->size();
        *changes += static_cast<int64_t>(map.transitions.sum());
        return absl::OkStatus();
      });
  const double seconds = NowSeconds() - t0;
  if (!s.ok()) Die(s.ToString());
  if (bytes == 0 && n > 0) Die("no output");
  return seconds;
}

int SimmapMode(Flags& flags) {
  const Problem p = Load(flags.Str("tree"), flags.Str("tips"));
  const std::string rates = flags.Str("rates", "ER");
  const int64_t n = flags.Int("n", 1000);
  absl::StatusOr<mk::PathSampler> sampler = mk::ParsePathSampler(flags.Str("sampler", "auto"));
  if (!sampler.ok()) Die(sampler.status().ToString());
  const uint64_t seed = static_cast<uint64_t>(flags.Int("seed", 1));
  const double given_q = flags.Double("q", "0");
  flags.Check();
  const double t0 = NowSeconds();
  mk::MkParams params;
  if (given_q > 0) {
    if (rates != "ER") Die("--q needs --rates=ER");
    absl::StatusOr<mk::MkParams> er = mk::MkParams::FromRates(
        p.names, mk::RateIndex(mk::RateModel::kER, static_cast<int>(p.names.size())),
        Eigen::VectorXd::Constant(1, given_q));
    if (!er.ok()) Die(er.status().ToString());
    params = *std::move(er);
  } else {
    absl::StatusOr<mk::MkFitResult> fit = ExactFit(p, Spec(p, rates), 1e-10, true);
    if (!fit.ok()) Die(fit.status().ToString());
    params = fit->params;
  }
  const double fit_seconds = NowSeconds() - t0;
  int64_t changes = 0;
  const double seconds = DrawMaps(p, params, n, seed, *sampler, &changes);
  const Eigen::VectorXd q = params.Rates();
  std::printf(
      "{\"mode\": \"simmap\", \"rates\": \"%s\", \"sampler\": \"%s\", \"n\": %lld, "
      "\"fit_seconds\": %s, \"seconds\": %s, \"ms_per_map\": %s, \"mean_changes\": %s, "
      "\"rate_values\": %s, \"tips\": %d}\n",
      rates.c_str(), mk::PathSamplerName(*sampler), static_cast<long long>(n),
      Exact(fit_seconds).c_str(), Exact(seconds).c_str(), Exact(1000 * seconds / n).c_str(),
      Exact(static_cast<double>(changes) / n).c_str(),
      JsonList(std::vector<double>(q.data(), q.data() + q.size())).c_str(), p.tree.num_tips);
  return 0;
}

int ShortTreeMode(Flags& flags) {
  const Problem p = Load(flags.Str("tree"), flags.Str("tips"));
  const std::string out_tree = flags.Str("out_tree");
  const std::string out_tips = flags.Str("out_tips");
  const double eps = flags.Double("eps", "1e-3");
  flags.Check();
  // Each tip v (branch t) becomes (v.1:eps, v.2:eps):(t - eps); v.2 takes the next state.
  std::map<std::string, std::string> state_of;
  for (size_t i = 0; i < p.labels.size(); ++i) state_of[p.labels[i]] = p.states[i];
  std::string text = mk::WriteNewick(p.tree);
  std::string csv = "label,state\n";
  for (int v = 0; v < p.tree.num_tips; ++v) {
    const std::string label = mk::NewickLabel(p.tree.labels[v]);
    const std::string state = state_of.at(p.tree.labels[v]);
    const size_t next =
        (std::find(p.names.begin(), p.names.end(), state) - p.names.begin() + 1) % p.names.size();
    char buf[160];
    std::snprintf(buf, sizeof(buf), "(%s.1:%.17g,%s.2:%.17g):%.17g", label.c_str(), eps,
                  label.c_str(), eps, std::max(p.tree.length[v] - eps, 0.0));
    // Replace "label:length" (lengths are written with %.17g) by the cherry.
    char old[160];
    std::snprintf(old, sizeof(old), "%s:%.17g", label.c_str(), p.tree.length[v]);
    const size_t at = text.find(old);
    if (at == std::string::npos) Die("cannot find tip " + label);
    text.replace(at, std::string(old).size(), buf);
    csv += p.tree.labels[v] + ".1," + state + "\n";
    csv += p.tree.labels[v] + ".2," + p.names[next] + "\n";
  }
  std::ofstream(out_tree) << text << "\n";
  std::ofstream(out_tips) << csv;
  std::printf("{\"mode\": \"short_tree\", \"tips\": %d, \"eps\": %g}\n", 2 * p.tree.num_tips, eps);
  return 0;
}

class Progress : public FitObserver {
 public:
  explicit Progress(double target) : target_(target), start_(NowSeconds()) {}
  void OnIteration(const IterationEvent& e) override {
    histories_ += e.sample_size;
    if (reached_seconds_ < 0 && e.log_likelihood >= target_) {
      reached_seconds_ = NowSeconds() - start_;
      reached_histories_ = histories_;
      reached_iteration_ = e.iteration;
    }
    last_sample_size_ = e.sample_size;
  }
  double target_;
  double start_;
  int64_t histories_ = 0;  // node-state draws (Rao-Blackwellised) or full histories, summed
  double reached_seconds_ = -1;
  int64_t reached_histories_ = -1;
  int reached_iteration_ = -1;
  int64_t last_sample_size_ = 0;
};

int McemMode(Flags& flags) {
  const Problem p = Load(flags.Str("tree"), flags.Str("tips"));
  const std::string rates = flags.Str("rates", "SYM");
  const bool rao_blackwell = flags.Int("rao_blackwell", 1) != 0;
  const uint64_t seed = static_cast<uint64_t>(flags.Int("seed", 1));
  flags.Check();
  absl::StatusOr<mk::MkFitResult> exact = ExactFit(p, Spec(p, rates), 1e-12, true);
  if (!exact.ok()) Die(exact.status().ToString());
  mk::MkSpec spec = Spec(p, rates);
  spec.estep = mk::EStepMethod::kMonteCarlo;
  spec.rao_blackwell = rao_blackwell;
  FitOptions options;
  options.max_iter = 1000;
  options.seed = seed;
  Progress progress(exact->summary.log_likelihood - 0.01);
  FitControls controls;
  controls.observer = &progress;
  absl::StatusOr<mk::MkFitResult> mc = mk::Fit(p.tree, p.tips, spec, options, controls);
  const double seconds = NowSeconds() - progress.start_;
  if (!mc.ok()) Die(mc.status().ToString());
  std::printf(
      "{\"mode\": \"mcem\", \"rates\": \"%s\", \"rao_blackwell\": %s, \"exact_log_likelihood\": "
      "%s, \"log_likelihood\": %s, \"iterations\": %d, \"histories\": %lld, \"seconds\": %s, "
      "\"within_0.01_histories\": %lld, \"within_0.01_seconds\": %s, \"within_0.01_iteration\": "
      "%d, \"last_sample_size\": %lld, \"message\": \"%s\"}\n",
      rates.c_str(), rao_blackwell ? "true" : "false", Exact(exact->summary.log_likelihood).c_str(),
      Exact(mc->summary.log_likelihood).c_str(), mc->summary.iterations,
      static_cast<long long>(progress.histories_), Exact(seconds).c_str(),
      static_cast<long long>(progress.reached_histories_), Exact(progress.reached_seconds_).c_str(),
      progress.reached_iteration_, static_cast<long long>(progress.last_sample_size_),
      mc->summary.message.c_str());
  return 0;
}

std::string CaterpillarNewick(int n) {
  std::string s(n - 1, '(');
  s += "t0:1";
  for (int i = 1; i < n; ++i) s += ",t" + std::to_string(i) + ":1):0.5";
  return s + ";";
}

std::string BalancedNewick(int n) {
  // Halves of a range joined recursively, written with an explicit stack of ranges.
  std::string s;
  struct Item {
    int lo, hi;
    int state;  // 0: open, 1: after left, 2: after right
  };
  std::vector<Item> stack = {{0, n, 0}};
  while (!stack.empty()) {
    Item& it = stack.back();
    if (it.hi - it.lo == 1) {
      s += "t" + std::to_string(it.lo) + ":0.25";
      stack.pop_back();
      continue;
    }
    const int mid = it.lo + (it.hi - it.lo) / 2;
    if (it.state == 0) {
      s += "(";
      it.state = 1;
      stack.push_back({it.lo, mid, 0});
    } else if (it.state == 1) {
      s += ",";
      it.state = 2;
      stack.push_back({mid, it.hi, 0});
    } else {
      s += "):1";
      stack.pop_back();
    }
  }
  return s + ";";
}

int NewickMode(Flags& flags) {
  const int n = static_cast<int>(flags.Int("tips_count", 100000));
  const int repeats = static_cast<int>(flags.Int("repeats", 5));
  flags.Check();
  std::printf("{\"mode\": \"newick\", \"tips\": %d", n);
  for (const auto& [name, text] :
       {std::pair<std::string, std::string>{"caterpillar", CaterpillarNewick(n)},
        {"balanced", BalancedNewick(n)}}) {
    std::vector<double> seconds;
    for (int r = 0; r < repeats; ++r) {
      const double t0 = NowSeconds();
      absl::StatusOr<mk::Tree> t = mk::ParseNewick(text);
      seconds.push_back(NowSeconds() - t0);
      if (!t.ok() || t->num_tips != n) Die("parse failed: " + t.status().ToString());
    }
    std::printf(", \"%s_bytes\": %zu, \"%s_seconds\": %s", name.c_str(), text.size(), name.c_str(),
                Exact(Median(seconds)).c_str());
  }
  std::printf("}\n");
  return 0;
}

int IntegralsMode(Flags& flags) {
  const Problem p = Load(flags.Str("tree"), flags.Str("tips"));
  const std::string rates = flags.Str("rates", "SYM");
  const int repeats = static_cast<int>(flags.Int("repeats", 20));
  flags.Check();
  absl::StatusOr<mk::MkFitResult> fit = ExactFit(p, Spec(p, rates), 1e-10, true);
  if (!fit.ok()) Die(fit.status().ToString());
  absl::StatusOr<mk::internal::TreeData> data =
      mk::internal::MatchTips(p.tree, p.tips, static_cast<int>(p.names.size()));
  absl::StatusOr<mk::internal::RateLayout> layout =
      mk::internal::RateLayout::FromIndex(fit->params.index, "index");
  if (!data.ok() || !layout.ok()) Die("bad data");
  if (!layout->symmetric) Die("--rates must be symmetric (ER or SYM) to compare with the EVD");
  std::printf("{\"mode\": \"integrals\", \"rates\": \"%s\"", rates.c_str());
  std::vector<Eigen::MatrixXd> counts;
  for (auto method :
       {mk::internal::IntegralMethod::kEigen, mk::internal::IntegralMethod::kVanLoan}) {
    const mk::internal::MkModel model(*data, *layout, p.names, mk::RootPrior::kEqual, {}, 0, 0,
                                      method);
    const mk::internal::MkFamily family(model);
    mk::internal::MkFamily::Stats stats = family.NewStats();
    std::vector<double> seconds;
    for (int r = 0; r < repeats; ++r) {
      const double t0 = NowSeconds();
      absl::StatusOr<double> ll = family.EStep(fit->params, {}, &stats);
      seconds.push_back(NowSeconds() - t0);
      if (!ll.ok()) Die(ll.status().ToString());
    }
    counts.push_back(stats.n);
    counts.back().conservativeResize(Eigen::NoChange, stats.n.cols() + 1);
    counts.back().col(stats.n.cols()) = stats.t;
    std::printf(", \"%s_estep_seconds\": %s",
                method == mk::internal::IntegralMethod::kEigen ? "eigen" : "van_loan",
                Exact(Median(seconds)).c_str());
  }
  std::printf(", \"max_abs_difference\": %s}\n",
              Exact((counts[0] - counts[1]).cwiseAbs().maxCoeff()).c_str());
  return 0;
}

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  const std::string mode = flags.Str("mode");
  if (mode == "fit") return FitMode(flags);
  if (mode == "simmap") return SimmapMode(flags);
  if (mode == "short_tree") return ShortTreeMode(flags);
  if (mode == "mcem") return McemMode(flags);
  if (mode == "newick") return NewickMode(flags);
  if (mode == "integrals") return IntegralsMode(flags);
  Die("unknown --mode=" + mode);
}

}  // namespace
}  // namespace emfit::bench

int main(int argc, char** argv) { return emfit::bench::Main(argc, argv); }
