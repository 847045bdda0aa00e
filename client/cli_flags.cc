#include "cli_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, data, "",
          "The data: a CSV file with one row per observation (\"-\": standard input; named pipes "
          "work).");
ABSL_FLAG(std::string, header, "auto", "Whether the CSV has a header line: auto, yes, no.");
ABSL_FLAG(std::string, delimiter, ",",
          "CSV cell delimiter: one character, or tab, comma, semicolon, space, pipe.");
ABSL_FLAG(std::vector<std::string>, columns, {},
          "The CSV columns to use, in this order (names or 1-based indices); default: all.");
ABSL_FLAG(std::vector<std::string>, drop, {},
          "CSV columns to leave out (names or 1-based indices), e.g. an index column.");
ABSL_FLAG(std::string, weights, "",
          "A CSV column (name or 1-based index) holding non-negative row weights.");
ABSL_FLAG(std::string, family, "gmm",
          "Model family: gmm (Gaussian mixture), hmm (hidden Markov model) or mk (Mk model on a "
          "tree).");
ABSL_FLAG(std::string, k, "2",
          "Number of components or states. For select: a list or range, e.g. 1..9 or 1,2,4.");
ABSL_FLAG(std::string, covariance, "full",
          "Covariance type: full, diag, tied, spherical (select: a comma list).");
ABSL_FLAG(std::string, emission, "gaussian",
          "hmm: what each state emits: gaussian (the columns jointly), categorical (one column "
          "of symbols, numbers or names), poisson (columns of counts).");
ABSL_FLAG(std::string, sequence_column, "",
          "hmm: the CSV column (name or 1-based index) holding each row's sequence id; the rows "
          "of a sequence are consecutive, in time order. Unset: the rows are one sequence.");
ABSL_FLAG(std::optional<double>, reg_covar, std::nullopt,
          "Added to the diagonal of every covariance (>= 0); unset: the server's default (1e-6).");
ABSL_FLAG(std::string, init, "kmeans",
          "Initialisation: kmeans, k-means++, random_from_data, random (hmm: kmeans, from the "
          "data, or random).");
ABSL_FLAG(std::string, init_model, "",
          "Warm start from this JSON (a result written by --out, or a model).");
ABSL_FLAG(std::vector<std::string>, fix, {},
          "Parameters held at the --init_model values, a comma list (gmm: weights, means, "
          "covariances; hmm: start, transitions, emissions).");
ABSL_FLAG(std::string, acceleration, "none", "EM acceleration: none or squarem.");
ABSL_FLAG(std::optional<int>, max_iter, std::nullopt,
          "Maximum EM iterations per restart; unset: the server's default (1000).");
ABSL_FLAG(std::optional<double>, tol, std::nullopt,
          "Stop when the mean log-likelihood changes by less than this and is not projected to "
          "rise by more (docs/gmm.md); 0 runs max_iter; unset: the server's default (1e-6; mk: "
          "1e-10).");
ABSL_FLAG(int, n_init, 1, "Restarts; the best final log-likelihood is kept.");
ABSL_FLAG(uint64_t, seed, 0, "Seed of all random choices.");
ABSL_FLAG(std::string, model, "",
          "posterior, score, simmap: the model JSON (a result written by --out, or a model; "
          "simmap: an Mk model).");
ABSL_FLAG(bool, ignore_feature_names, false,
          "Use --model or --init_model even if its column names differ from the data's.");
ABSL_FLAG(std::string, criterion, "bic", "select: bic or aic (lower is better).");
ABSL_FLAG(std::string, out, "",
          "Write the result here (\"-\": standard output): JSON for fit, score and select; CSV "
          "for posterior and the maps for simmap (default: standard output).");
ABSL_FLAG(std::string, progress, "auto",
          "Progress on standard error: auto, line, log, none (warnings are always shown).");
ABSL_FLAG(int, chunk_bytes, 256 << 10, "Bytes of data per streamed message (>= 8).");
ABSL_FLAG(double, timeout, 0, "Call deadline in seconds (>= 0); 0 means none.");

ABSL_FLAG(std::string, tree, "", "mk: the tree, a Newick file with branch lengths.");
ABSL_FLAG(std::string, tips, "",
          "mk: a CSV of tip label (first column) and state; header optional; '?', '-' or empty: "
          "missing; A|B: either state.");
ABSL_FLAG(std::string, state_column, "",
          "mk: the --tips column holding the states (a header name or a 1-based index); default: "
          "the second column.");
ABSL_FLAG(std::vector<std::string>, states, {},
          "mk fit, select: the state names in order, a comma list; default: the states in --tips, "
          "sorted (as R sorts factor levels).");
ABSL_FLAG(bool, allow_missing_tips, false,
          "mk: tips of the tree without a row are missing and rows naming no tip are ignored, "
          "each with a warning, instead of an error.");
ABSL_FLAG(std::string, rates, "ER",
          "mk: ER, SYM, ARD, or a CSV file of the k x k index matrix (equal positive values share "
          "a rate, 0 forbids the change; a header of state names is optional). select: a comma "
          "list.");
ABSL_FLAG(std::string, root, "equal",
          "mk: the root prior: equal, stationary, or a CSV file of k probabilities (a header of "
          "state names is optional).");
ABSL_FLAG(std::string, estep, "exact",
          "mk: exact (expected counts by matrix exponentials) or monte-carlo (Monte Carlo EM).");
ABSL_FLAG(std::optional<double>, mcem_tol, std::nullopt,
          "mk, --estep=monte-carlo: stop when the improvement's upper bound is below this (total "
          "log-likelihood); unset: the server's default (1e-3).");
ABSL_FLAG(std::optional<int>, max_sample_size, std::nullopt,
          "mk, --estep=monte-carlo: the most histories per iteration; unset: the server's default "
          "(1e5, or less if the tree is large).");
ABSL_FLAG(int, n, 100, "simmap: the number of stochastic maps to draw.");
ABSL_FLAG(std::string, sampler, "auto",
          "simmap: how branch histories are drawn: auto, rejection, modified_rejection, "
          "uniformization.");
ABSL_FLAG(std::string, summary_out, "",
          "A summary besides the main output. hmm posterior: each sequence's log-likelihood and "
          "Viterbi log-probability (CSV); simmap: the maps' summary (JSON). \"-\": standard "
          "output, when --out is a file.");
