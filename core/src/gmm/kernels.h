// Row-tiled kernels of the Gaussian-mixture E-step and of its sufficient statistics
// (docs/algorithms.md §1.1-§1.2; docs/benchmarks.md, "How the kernels are laid out").
//
// A block of rows is held feature-major: column c of `xt` is feature c of every row (n_pad x d,
// column-major, zero-padded to a multiple of kTileRows). Every inner loop then runs over
// kTileRows consecutive rows with the same parameter, so the compiler vectorises it for whatever
// ISA the library is built for, keeps the per-row partial sums in registers, and needs no matrix
// product with a short inner dimension (whose packing costs as much as the arithmetic at d=8).
// Everything is in the centred form, (x - mu) before any product, so nothing cancels when the
// data sit far from the origin; the sums over the rows of a block are taken in a fixed order.
#ifndef EMFIT_CORE_GMM_KERNELS_H_
#define EMFIT_CORE_GMM_KERNELS_H_

#include <Eigen/Core>
#include <vector>

#include "emfit/data/dataset.h"
#include "gmm/components.h"
#include "gmm/stats.h"

namespace emfit::gmm::internal {

// Rows per tile: four SIMD registers of doubles (8 with SSE2, 16 with AVX2, 32 with AVX-512),
// enough independent lanes to hide the latency of the fused multiply-adds.
inline constexpr int kTileRows = 4 * Eigen::internal::packet_traits<double>::size;
using Lanes = Eigen::Array<double, kTileRows, 1>;
using LanesVector = std::vector<Lanes, Eigen::aligned_allocator<Lanes>>;

// Work memory of the kernels, reused across blocks so that steady state allocates nothing.
// The kernels read the block through `x`: feature-major, `ld` values per feature (a multiple of
// kTileRows, zeros past `rows`), `cols` features. It points into `xt` or, for a block that is
// already feature-major in the data (ViewFeatureMajor), into the data themselves.
struct KernelScratch {
  const double* x = nullptr;
  Eigen::Index ld = 0;                    // values per feature (n_pad)
  Eigen::Index rows = 0;                  // rows of the block (n <= n_pad)
  int cols = 0;                           // features
  Eigen::MatrixXd xt;                     // an own feature-major copy, n_pad x d
  LanesVector tiles;                      // tiles and accumulators, one row-tile of a feature each
  std::vector<double> params;             // row-major copies of the parameters
  Eigen::RowVectorXd mu, first, squares;  // one component's shift and moments
};

// Copies `block` (n x d) feature-major into scratch->xt, padding with zeros.
void ToFeatureMajor(const Eigen::Ref<const RowMatrix>& block, KernelScratch* scratch);

// Points the kernels at a block stored feature-major (`rows` values per feature, `cols`
// features); copies it into scratch->xt only when `rows` is not a whole number of tiles.
void ViewFeatureMajor(const double* block, Eigen::Index rows, int cols, KernelScratch* scratch);

// Copies features `cols` (ascending indices) of rows `rows` of `block` (`count` of them; null:
// rows [first, first + count)) feature-major into scratch->xt, padded with zeros.
void GatherFeatureMajor(const Eigen::Ref<const RowMatrix>& block, const Eigen::Index* rows,
                        Eigen::Index first, Eigen::Index count, const std::vector<int>& cols,
                        KernelScratch* scratch);

// Sets features `mis` of the rows in `completed` (feature-major, `ld` values per feature) to
// the conditional means mu_m + B (x_o - mu_o) of a Gaussian with mean `mu` (d) given features
// `obs`, read from `observed` (the same rows, feature-major over `obs` only, the same `ld`).
// `b` is B (|mis| x |obs|, column-major; docs/algorithms.md §2). Padding rows get finite values.
void ConditionalMeansTiled(const KernelScratch& observed, const std::vector<int>& obs,
                           const std::vector<int>& mis, const Eigen::MatrixXd& b, const double* mu,
                           KernelScratch* completed);

// Rearranges the rows of `x` in place, block of kBlockRows rows by block: each block's
// values become feature-major within the block's own storage (column f of the block at
// offset f * rows). What ViewFeatureMajor reads without copying.
void BlocksToFeatureMajor(RowMatrix* x);

// For the rows of the block in `scratch`: without `row_ll`, out (n x k) = a_ij = ln pi_j + ln N(x_i
// | mu_j, Sigma_j); with it, out = the responsibilities (each row's softmax of a_ij) and row_ll (n)
// = each row's log-likelihood LSE_j a_ij, as NormalizeRows gives, tile by tile.
void EStepTiled(const Components& c, KernelScratch* scratch, Eigen::MatrixXd* out,
                Eigen::VectorXd* row_ll);

// For component j only: out[i] = `extra` + ln pi_j + ln N(x_i | mu_j, Sigma_j) for the rows of
// the block in `scratch` (full d features), as EStepTiled's log-joint column j.
void ComponentLogJointTiled(const Components& c, int j, double extra, KernelScratch* scratch,
                            double* out);

// Adds the statistics of the rows of the block in `scratch` to `stats`: responsibilities `resp` (n
// x k), row weights `w` (empty: 1), moments about `shift` (k x d). What is accumulated follows the
// layout `stats` was reset to: a scatter per component (sdd), one pooled second moment (sxx,
// tied without missing values) or squared deviations per coordinate (sdd_diag).
void AccumulateTiled(const Eigen::MatrixXd& resp, const Eigen::Ref<const Eigen::VectorXd>& w,
                     const Eigen::MatrixXd& shift, KernelScratch* scratch, GmmStats* stats);

// Adds component j's statistics only, with w_i r_ij given per row (`wr_rows`, scratch->rows
// values): a scatter (sdd) when `stats` has one, squared deviations (sdd_diag) otherwise.
// total_weight is left to the caller.
void AccumulateComponentTiled(int j, const double* wr_rows, const Eigen::MatrixXd& shift,
                              KernelScratch* scratch, GmmStats* stats);

// The same for a block given row-major: ToFeatureMajor, then the tiled kernel.
void LogJoint(const Components& c, const Eigen::Ref<const RowMatrix>& block, Eigen::MatrixXd* out,
              KernelScratch* scratch);
void Responsibilities(const Components& c, const Eigen::Ref<const RowMatrix>& block,
                      Eigen::MatrixXd* resp, Eigen::VectorXd* row_ll, KernelScratch* scratch);
void AccumulateBlock(const Eigen::Ref<const RowMatrix>& block,
                     const Eigen::Ref<const Eigen::VectorXd>& w, const Eigen::MatrixXd& resp,
                     const Eigen::MatrixXd& shift, GmmStats* stats, KernelScratch* scratch);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_KERNELS_H_
