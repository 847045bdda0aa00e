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
          "Model family: gmm (Gaussian mixture), hmm (hidden Markov model).");
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
ABSL_FLAG(std::string, summary_out, "",
          "hmm posterior: also write each sequence's log-likelihood and Viterbi log-probability "
          "here (CSV).");
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
          "Maximum EM iterations per restart; unset: the server's default (100).");
ABSL_FLAG(std::optional<double>, tol, std::nullopt,
          "Stop when the mean log-likelihood changes by less than this and is not projected to "
          "rise by more (docs/gmm.md); 0 runs max_iter; unset: the server's default (1e-6).");
ABSL_FLAG(int, n_init, 1, "Restarts; the best final log-likelihood is kept.");
ABSL_FLAG(uint64_t, seed, 0, "Seed of all random choices.");
ABSL_FLAG(std::string, model, "",
          "posterior, score: the model JSON (a result written by --out, or a model).");
ABSL_FLAG(bool, ignore_feature_names, false,
          "Use --model or --init_model even if its column names differ from the data's.");
ABSL_FLAG(std::string, criterion, "bic", "select: bic or aic (lower is better).");
ABSL_FLAG(std::string, out, "",
          "Write the result here (\"-\": standard output): JSON for fit, score and select; CSV "
          "for posterior (default: standard output).");
ABSL_FLAG(std::string, progress, "auto",
          "Progress on standard error: auto, line, log, none (warnings are always shown).");
ABSL_FLAG(int, chunk_bytes, 256 << 10, "Bytes of data per streamed message (>= 8).");
ABSL_FLAG(double, timeout, 0, "Call deadline in seconds (>= 0); 0 means none.");
