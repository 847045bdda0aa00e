#include "gmm/kernels.h"

#include <algorithm>

#include "exec/stripes.h"

namespace emfit::gmm::internal {
namespace {

constexpr int R = kTileRows;
// Rows per chunk of the scatter: its centred and weighted copies (2 x 128 x d doubles, 16 KiB at
// d=8) stay in the L1 cache. A constant on purpose: a chunk sized by d measured 10% slower at
// d=16 (the loops lose their constant trip count).
constexpr int kChunkRows = 128;
constexpr Eigen::Index kChunkTiles = std::max(1, kChunkRows / R);

using ConstLanesMap = Eigen::Map<const Lanes>;

// The rows [i0, i0 + R) of feature f of the feature-major block `x` (leading dimension ld).
inline ConstLanesMap Feature(const double* x, Eigen::Index ld, Eigen::Index i0, int f) {
  return ConstLanesMap(x + f * ld + i0);
}

// y_f = x_f - mu_f for every feature of the tile at i0.
inline void CentredTile(const double* x, Eigen::Index ld, Eigen::Index i0, int d, const double* mu,
                        Lanes* y) {
  for (int f = 0; f < d; ++f) y[f] = Feature(x, ld, i0, f) - mu[f];
}

// z_l = sum_{c<=l} U_cl y_c for U upper triangular (column-major d x d), the rows of the tile
// times U. With `norms`, only *norms = sum_l z_l^2 is kept.
inline void TriangularTimes(const Lanes* y, int d, const double* u, Lanes* z_out, Lanes* norms) {
  Lanes acc = Lanes::Zero();
  for (int l = 0; l < d; ++l) {
    const double* ul = u + static_cast<Eigen::Index>(l) * d;
    Lanes z = ul[0] * y[0];
    for (int c = 1; c <= l; ++c) z += ul[c] * y[c];
    if (norms != nullptr) {
      acc += z.square();
    } else {
      z_out[l] = z;
    }
  }
  if (norms != nullptr) *norms = acc;
}

// out[r] = v[r] for the valid rows of a tile.
inline void StoreRows(const Lanes& v, int valid, double* out) {
  if (valid == R) {
    Eigen::Map<Lanes> dst(out);
    dst = v;
  } else {
    for (int r = 0; r < valid; ++r) out[r] = v[r];
  }
}

// Turns the tile's a_ij (one Lanes per component) into responsibilities, written to rows
// [i0, i0 + valid) of `resp`, and each row's log-likelihood LSE_j a_ij into `row_ll`.
void NormalizeTile(Lanes* a, int k, int valid, Eigen::MatrixXd* resp, Eigen::Index i0,
                   double* row_ll) {
  Lanes top = a[0];
  for (int j = 1; j < k; ++j) top = top.max(a[j]);
  if (!top.isFinite().all()) {
    // Rare: a row impossible under every component (or invalid): row by row, as NormalizeRows.
    for (int r = 0; r < valid; ++r) {
      Eigen::RowVectorXd row(k);
      for (int j = 0; j < k; ++j) row[j] = a[j][r];
      Eigen::VectorXd ll(1);
      Eigen::MatrixXd one = row;
      NormalizeRows(&one, &ll);
      resp->row(i0 + r) = one;
      row_ll[r] = ll[0];
    }
    return;
  }
  Lanes sum = Lanes::Zero();
  for (int j = 0; j < k; ++j) {
    a[j] = (a[j] - top).exp();
    sum += a[j];
  }
  const Lanes inv = sum.inverse();
  for (int j = 0; j < k; ++j) StoreRows(a[j] * inv, valid, resp->col(j).data() + i0);
  StoreRows(top + sum.log(), valid, row_ll);
}

// lower(a, b) += sum_i u_ia v_ib for b <= a, with u and v column-major (n x d, n a multiple
// of kTileRows). Two columns of u against two of v at a time, so that each value loaded feeds
// two multiply-adds, with two SIMD registers of partial sums per product. Written with Eigen's
// packet primitives rather than fixed-size arrays: GCC keeps packets in registers, while it
// re-reads array operands from memory for every product (2x the loads).
void LowerProducts(const double* u, const double* v, Eigen::Index n, int d,
                   Eigen::MatrixXd* lower) {
  namespace ei = Eigen::internal;
  using Packet = ei::packet_traits<double>::type;
  constexpr int P = ei::packet_traits<double>::size;
  for (int a0 = 0; a0 < d; a0 += 2) {
    const int a1 = std::min(a0 + 1, d - 1);
    const double* u0 = u + a0 * n;
    const double* u1 = u + a1 * n;
    for (int b0 = 0; b0 <= a1; b0 += 2) {
      const int b1 = std::min(b0 + 1, d - 1);
      const double* v0 = v + b0 * n;
      const double* v1 = v + b1 * n;
      Packet s00a = ei::pset1<Packet>(0.0), s01a = s00a, s10a = s00a, s11a = s00a;
      Packet s00b = s00a, s01b = s00a, s10b = s00a, s11b = s00a;
      for (Eigen::Index i = 0; i < n; i += 2 * P) {
        const Packet x0a = ei::ploadu<Packet>(u0 + i), x0b = ei::ploadu<Packet>(u0 + i + P);
        const Packet x1a = ei::ploadu<Packet>(u1 + i), x1b = ei::ploadu<Packet>(u1 + i + P);
        const Packet y0a = ei::ploadu<Packet>(v0 + i), y0b = ei::ploadu<Packet>(v0 + i + P);
        const Packet y1a = ei::ploadu<Packet>(v1 + i), y1b = ei::ploadu<Packet>(v1 + i + P);
        s00a = ei::pmadd(x0a, y0a, s00a);
        s00b = ei::pmadd(x0b, y0b, s00b);
        s01a = ei::pmadd(x0a, y1a, s01a);
        s01b = ei::pmadd(x0b, y1b, s01b);
        s10a = ei::pmadd(x1a, y0a, s10a);
        s10b = ei::pmadd(x1b, y0b, s10b);
        s11a = ei::pmadd(x1a, y1a, s11a);
        s11b = ei::pmadd(x1b, y1b, s11b);
      }
      (*lower)(a0, b0) += ei::predux(ei::padd(s00a, s00b));
      if (b1 != b0 && b1 <= a0) (*lower)(a0, b1) += ei::predux(ei::padd(s01a, s01b));
      if (a1 != a0) {
        (*lower)(a1, b0) += ei::predux(ei::padd(s10a, s10b));
        if (b1 != b0) (*lower)(a1, b1) += ei::predux(ei::padd(s11a, s11b));
      }
    }
  }
}

}  // namespace

void ToFeatureMajor(const Eigen::Ref<const RowMatrix>& block, KernelScratch* scratch) {
  namespace ei = Eigen::internal;
  using Packet = ei::packet_traits<double>::type;
  constexpr int P = ei::packet_traits<double>::size;
  const Eigen::Index n = block.rows();
  const int d = static_cast<int>(block.cols());
  const Eigen::Index padded = (n + R - 1) / R * R;
  scratch->rows = n;
  scratch->xt.resize(padded, d);
  const double* src = block.data();
  const Eigen::Index stride = block.outerStride();
  double* dst = scratch->xt.data();
  // P x P squares through SIMD registers (load P rows, transpose, store P feature runs); the
  // columns and rows left over one value at a time.
  const Eigen::Index square_rows = n / P * P;
  const int square_cols = d / P * P;
  for (Eigen::Index i = 0; i < square_rows; i += P) {
    for (int f = 0; f < square_cols; f += P) {
      // GCC warns that a SIMD type's alignment attribute is dropped in a template argument;
      // Eigen silences the same warning in its own headers. Harmless: only the value matters.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
      ei::PacketBlock<Packet, P> square;
#pragma GCC diagnostic pop
      for (int r = 0; r < P; ++r) square.packet[r] = ei::ploadu<Packet>(src + (i + r) * stride + f);
      ei::ptranspose(square);
      for (int c = 0; c < P; ++c) ei::pstoreu(dst + (f + c) * padded + i, square.packet[c]);
    }
    for (int f = square_cols; f < d; ++f) {
      for (int r = 0; r < P; ++r) dst[f * padded + i + r] = src[(i + r) * stride + f];
    }
  }
  for (Eigen::Index i = square_rows; i < n; ++i) {
    for (int f = 0; f < d; ++f) dst[f * padded + i] = src[i * stride + f];
  }
  if (padded > n) scratch->xt.bottomRows(padded - n).setZero();
  scratch->x = scratch->xt.data();
  scratch->ld = padded;
  scratch->cols = d;
}

namespace {

// Sizes scratch->xt for `rows` x `cols` feature-major (zeroed) and points the kernels at it.
Eigen::MatrixXd& ZeroedFeatureMajor(Eigen::Index rows, int cols, KernelScratch* scratch) {
  const Eigen::Index padded = (rows + R - 1) / R * R;
  scratch->xt.setZero(padded, cols);
  scratch->x = scratch->xt.data();
  scratch->ld = padded;
  scratch->rows = rows;
  scratch->cols = cols;
  return scratch->xt;
}

}  // namespace

void ViewFeatureMajor(const double* block, Eigen::Index rows, int cols, KernelScratch* scratch) {
  if (rows % R == 0) {
    scratch->x = block;
    scratch->ld = rows;
    scratch->rows = rows;
    scratch->cols = cols;
    return;
  }
  Eigen::MatrixXd& xt = ZeroedFeatureMajor(rows, cols, scratch);
  xt.topRows(rows) = Eigen::Map<const Eigen::MatrixXd>(block, rows, cols);
}

void GatherFeatureMajor(const Eigen::Ref<const RowMatrix>& block, const Eigen::Index* rows,
                        Eigen::Index first, Eigen::Index count, const std::vector<int>& cols,
                        KernelScratch* scratch) {
  const int c = static_cast<int>(cols.size());
  if (rows == nullptr && c == block.cols()) {
    ToFeatureMajor(block.middleRows(first, count), scratch);  // through SIMD transposes
    return;
  }
  const Eigen::Index padded = (count + R - 1) / R * R;
  scratch->xt.resize(padded, c);
  double* dst = scratch->xt.data();
  const Eigen::Index stride = block.outerStride();
  for (Eigen::Index i = 0; i < count; ++i) {
    const double* src = block.data() + (rows == nullptr ? first + i : rows[i]) * stride;
    for (int f = 0; f < c; ++f) dst[f * padded + i] = src[cols[f]];
  }
  // Not without columns (a row with no observed value): a block of an empty matrix offsets its
  // null data pointer, undefined behaviour (found by UBSan).
  if (padded > count && c > 0) scratch->xt.bottomRows(padded - count).setZero();
  scratch->x = scratch->xt.data();
  scratch->ld = padded;
  scratch->rows = count;
  scratch->cols = c;
}

void ConditionalMeansTiled(const KernelScratch& observed, const std::vector<int>& obs,
                           const std::vector<int>& mis, const Eigen::MatrixXd& b, const double* mu,
                           KernelScratch* completed) {
  const Eigen::Index ld = observed.ld;
  const int no = static_cast<int>(obs.size());
  const int nm = static_cast<int>(mis.size());
  double* out = completed->xt.data();
  LanesVector& tiles = completed->tiles;
  tiles.resize(static_cast<size_t>(no));
  Lanes* y = tiles.data();
  const double* bp = b.data();
  for (Eigen::Index i0 = 0; i0 < ld; i0 += R) {
    for (int o = 0; o < no; ++o) y[o] = Feature(observed.x, ld, i0, o) - mu[obs[o]];
    for (int m = 0; m < nm; ++m) {
      Lanes acc = Lanes::Constant(mu[mis[m]]);
      for (int o = 0; o < no; ++o) acc += bp[o * nm + m] * y[o];
      Eigen::Map<Lanes>(out + mis[m] * ld + i0) = acc;
    }
  }
}

void BlocksToFeatureMajor(RowMatrix* x) {
  const Eigen::Index n = x->rows(), d = x->cols();
  Eigen::MatrixXd block;
  for (Eigen::Index b = 0; b < n; b += ::emfit::internal::kBlockRows) {
    const Eigen::Index rows = std::min<Eigen::Index>(::emfit::internal::kBlockRows, n - b);
    block = x->middleRows(b, rows);  // column-major copy
    Eigen::Map<Eigen::MatrixXd>(x->data() + b * d, rows, d) = block;
  }
}

void EStepTiled(const Components& c, KernelScratch* scratch, Eigen::MatrixXd* out,
                Eigen::VectorXd* row_ll) {
  const Eigen::Index n = scratch->rows;
  const Eigen::Index ld = scratch->ld;
  const int d = c.d, k = c.k;
  const double* x = scratch->x;
  out->resize(n, k);
  if (row_ll != nullptr) row_ll->resize(n);
  const double* mu = c.means.data();
  const double* aux = c.aux.data();
  const double* offset = c.offset.data();
  LanesVector& tiles = scratch->tiles;
  tiles.resize(2 * static_cast<size_t>(d) + k);
  Lanes* y = tiles.data();
  Lanes* z = y + d;
  Lanes* a = z + d;  // a_ij of the tile, one Lanes per component
  Lanes m;
  for (Eigen::Index i0 = 0; i0 < n; i0 += R) {
    const int valid = static_cast<int>(std::min<Eigen::Index>(R, n - i0));
    switch (c.type) {
      case CovarianceType::kFull:
        for (int j = 0; j < k; ++j) {
          CentredTile(x, ld, i0, d, mu + j * d, y);
          TriangularTimes(y, d, c.prec_chol[j].data(), nullptr, &m);
          a[j] = offset[j] - 0.5 * m;
        }
        break;
      case CovarianceType::kTied:
        // x U once per tile (the fit centres the data), then ||x U - mu_j U||^2.
        for (int f = 0; f < d; ++f) y[f] = Feature(x, ld, i0, f);
        TriangularTimes(y, d, c.prec_chol[0].data(), z, nullptr);
        for (int j = 0; j < k; ++j) {
          const double* cj = aux + j * d;
          m = (z[0] - cj[0]).square();
          for (int f = 1; f < d; ++f) m += (z[f] - cj[f]).square();
          a[j] = offset[j] - 0.5 * m;
        }
        break;
      case CovarianceType::kDiag:
      case CovarianceType::kSpherical:
        for (int j = 0; j < k; ++j) {
          const double* mj = mu + j * d;
          const double* sj = aux + j * d;
          m = ((Feature(x, ld, i0, 0) - mj[0]) * sj[0]).square();
          for (int f = 1; f < d; ++f) m += ((Feature(x, ld, i0, f) - mj[f]) * sj[f]).square();
          a[j] = offset[j] - 0.5 * m;
        }
        break;
    }
    if (row_ll == nullptr) {
      for (int j = 0; j < k; ++j) StoreRows(a[j], valid, out->col(j).data() + i0);
    } else {
      NormalizeTile(a, k, valid, out, i0, row_ll->data() + i0);
    }
  }
}

void ComponentLogJointTiled(const Components& c, int j, double extra, KernelScratch* scratch,
                            double* out) {
  const Eigen::Index n = scratch->rows;
  const Eigen::Index ld = scratch->ld;
  const int d = c.d;
  const double* x = scratch->x;
  const double* mu = c.means.data() + static_cast<Eigen::Index>(j) * d;
  const double offset = c.offset[j] + extra;
  scratch->tiles.resize(static_cast<size_t>(d));
  Lanes* yp = scratch->tiles.data();
  Lanes m;
  for (Eigen::Index i0 = 0; i0 < n; i0 += R) {
    const int valid = static_cast<int>(std::min<Eigen::Index>(R, n - i0));
    if (c.type == CovarianceType::kFull || c.type == CovarianceType::kTied) {
      CentredTile(x, ld, i0, d, mu, yp);
      TriangularTimes(yp, d, c.prec_chol[c.type == CovarianceType::kFull ? j : 0].data(), nullptr,
                      &m);
    } else {
      const double* sj = c.aux.data() + static_cast<Eigen::Index>(j) * d;
      m = ((Feature(x, ld, i0, 0) - mu[0]) * sj[0]).square();
      for (int f = 1; f < d; ++f) m += ((Feature(x, ld, i0, f) - mu[f]) * sj[f]).square();
    }
    StoreRows(offset - 0.5 * m, valid, out + i0);
  }
}

namespace {

// wr[t] = w times `col` (either may be null: 1) for every tile, zero past row n.
void TileWeights(Eigen::Index n, Eigen::Index tile_count, const double* w, const double* col,
                 Lanes* wr) {
  for (Eigen::Index t = 0; t < tile_count; ++t) {
    const Eigen::Index i0 = t * R;
    if (i0 + R <= n) {
      // One expression per case: no store of a partial result that is read back at once.
      if (w != nullptr && col != nullptr) {
        wr[t] = ConstLanesMap(w + i0) * ConstLanesMap(col + i0);
      } else if (w != nullptr) {
        wr[t] = ConstLanesMap(w + i0);
      } else if (col != nullptr) {
        wr[t] = ConstLanesMap(col + i0);
      } else {
        wr[t].setOnes();
      }
      continue;
    }
    for (int r = 0; r < R; ++r) {
      wr[t][r] = i0 + r >= n
                     ? 0.0
                     : (w == nullptr ? 1.0 : w[i0 + r]) * (col == nullptr ? 1.0 : col[i0 + r]);
    }
  }
}

// Where Moments adds its sums; a null pointer skips that sum.
struct MomentSums {
  double* mass = nullptr;            // sum_i wr_i
  double* first = nullptr;           // d: sum_i wr_i (x_i - mu)
  Eigen::MatrixXd* lower = nullptr;  // d x d lower: sum_i wr_i (x_i - mu)(x_i - mu)^T
  double* squares = nullptr;         // d: sum_i wr_i (x_i - mu)^2 (when `lower` is null)
};

// Weighted moments about `mu` of the rows in the block, with tile weights scratch->tiles[0,
// tile_count). The scatter goes through the block in chunks of kChunkRows, whose centred and
// weighted copies stay in the L1 cache; the other sums keep their partial sums in registers.
void Moments(KernelScratch* scratch, const double* mu, const MomentSums& out) {
  const Eigen::Index ld = scratch->ld;
  const Eigen::Index tile_count = ld / R;
  const int d = scratch->cols;
  const double* x = scratch->x;
  const Lanes* wr = scratch->tiles.data();
  if (tile_count == 0) return;
  if (out.mass != nullptr) {
    Lanes mass = wr[0];
    for (Eigen::Index t = 1; t < tile_count; ++t) mass += wr[t];
    *out.mass += mass.sum();
  }
  if (out.lower == nullptr) {
    for (int f = 0; f < d; ++f) {
      Lanes sum1 = Lanes::Zero(), sum2 = Lanes::Zero();
      for (Eigen::Index t = 0; t < tile_count; ++t) {
        const Lanes yf = Feature(x, ld, t * R, f) - mu[f];
        const Lanes u = wr[t] * yf;
        sum1 += u;
        if (out.squares != nullptr) sum2 += u * yf;
      }
      if (out.first != nullptr) out.first[f] += sum1.sum();
      if (out.squares != nullptr) out.squares[f] += sum2.sum();
    }
    return;
  }
  const Eigen::Index chunk = kChunkTiles;
  Lanes* y = scratch->tiles.data() + tile_count;
  Lanes* wy = y + static_cast<size_t>(d) * chunk;
  for (Eigen::Index t0 = 0; t0 < tile_count; t0 += chunk) {
    const Eigen::Index c = std::min(chunk, tile_count - t0);
    for (int f = 0; f < d; ++f) {
      Lanes* yf = y + f * c;
      Lanes* wyf = wy + f * c;
      for (Eigen::Index t = 0; t < c; ++t) {
        yf[t] = Feature(x, ld, (t0 + t) * R, f) - mu[f];
        wyf[t] = wr[t0 + t] * yf[t];
      }
      if (out.first != nullptr) {
        Lanes acc = wyf[0];
        for (Eigen::Index t = 1; t < c; ++t) acc += wyf[t];
        out.first[f] += acc.sum();
      }
    }
    LowerProducts(wy[0].data(), y[0].data(), c * R, d, out.lower);
  }
}

// Sizes scratch->tiles for TileWeights and Moments.
void ReserveMomentTiles(KernelScratch* scratch) {
  scratch->tiles.resize(scratch->ld / R + 2 * static_cast<size_t>(scratch->cols) * kChunkTiles);
}

// Adds component j's mass, first moments and, per `stats`'s layout, its scatter (sdd) or
// squared deviations (sdd_diag, unless `pooled`) about shift row j, with the tile weights
// already in scratch->tiles.
void ComponentMoments(int j, const Eigen::MatrixXd& shift, bool pooled, KernelScratch* scratch,
                      GmmStats* s) {
  const bool scatter = !s->sdd.empty();
  Eigen::RowVectorXd& mu = scratch->mu;
  Eigen::RowVectorXd& first = scratch->first;
  Eigen::RowVectorXd& squares = scratch->squares;
  mu = shift.row(j);
  first.setZero(scratch->cols);
  squares.setZero(scratch->cols);
  Moments(scratch, mu.data(),
          {&s->nk[j], first.data(), scatter ? &s->sdd[j] : nullptr,
           scatter || pooled ? nullptr : squares.data()});
  s->delta.row(j) += first;
  if (!scatter && !pooled) s->sdd_diag.row(j) += squares;
}

}  // namespace

void AccumulateTiled(const Eigen::MatrixXd& resp, const Eigen::Ref<const Eigen::VectorXd>& w,
                     const Eigen::MatrixXd& shift, KernelScratch* scratch, GmmStats* s) {
  const Eigen::Index n = scratch->rows;
  const Eigen::Index tile_count = scratch->ld / R;
  const int k = static_cast<int>(resp.cols());
  const double* wp = w.size() != 0 ? w.data() : nullptr;
  const bool pooled = s->sxx.size() != 0;
  s->total_weight += wp != nullptr ? w.sum() : static_cast<double>(n);
  ReserveMomentTiles(scratch);
  Lanes* wr = scratch->tiles.data();
  if (pooled) {
    // Tied, complete data: sum_i w_i x_i x_i^T about the origin (the fit centres the data).
    TileWeights(n, tile_count, wp, nullptr, wr);
    scratch->mu.setZero(scratch->cols);
    Moments(scratch, scratch->mu.data(), {nullptr, nullptr, &s->sxx, nullptr});
  }
  for (int j = 0; j < k; ++j) {
    TileWeights(n, tile_count, wp, resp.col(j).data(), wr);
    ComponentMoments(j, shift, pooled, scratch, s);
  }
}

void AccumulateComponentTiled(int j, const double* wr_rows, const Eigen::MatrixXd& shift,
                              KernelScratch* scratch, GmmStats* s) {
  ReserveMomentTiles(scratch);
  TileWeights(scratch->rows, scratch->ld / R, wr_rows, nullptr, scratch->tiles.data());
  ComponentMoments(j, shift, /*pooled=*/false, scratch, s);
}

void LogJoint(const Components& c, const Eigen::Ref<const RowMatrix>& block, Eigen::MatrixXd* out,
              KernelScratch* scratch) {
  ToFeatureMajor(block, scratch);
  EStepTiled(c, scratch, out, nullptr);
}

void Responsibilities(const Components& c, const Eigen::Ref<const RowMatrix>& block,
                      Eigen::MatrixXd* resp, Eigen::VectorXd* row_ll, KernelScratch* scratch) {
  ToFeatureMajor(block, scratch);
  EStepTiled(c, scratch, resp, row_ll);
}

void AccumulateBlock(const Eigen::Ref<const RowMatrix>& block,
                     const Eigen::Ref<const Eigen::VectorXd>& w, const Eigen::MatrixXd& resp,
                     const Eigen::MatrixXd& shift, GmmStats* stats, KernelScratch* scratch) {
  ToFeatureMajor(block, scratch);
  AccumulateTiled(resp, w, shift, scratch, stats);
}

}  // namespace emfit::gmm::internal
