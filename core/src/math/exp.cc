#include "math/exp.h"

#include <Eigen/Core>
#include <array>
#include <cmath>

#if defined(__SSE2__) && !defined(__AVX2__)
#include <emmintrin.h>
#endif

namespace emfit::internal {

#if defined(__SSE2__) && !defined(__AVX2__)
namespace {

// 2^(j/32) for j = 0..31, rounded from long double.
const std::array<double, 32>& Exp2Table() {
  static const std::array<double, 32> table = [] {
    std::array<double, 32> t{};
    for (int j = 0; j < 32; ++j) t[j] = static_cast<double>(std::exp2(j / 32.0L));
    return t;
  }();
  return table;
}

}  // namespace

// exp(x) = 2^m 2^(j/32) e^r with n = 32 m + j = round(32 x / ln 2) and r = x - n ln 2 / 32
// (|r| <= ln 2 / 64, Cody-Waite in two parts), e^r by its Taylor polynomial of degree 6
// (truncation below 4e-18). n comes from the bits of x 32/ln 2 + 1.5 2^52 + 2^15, which holds
// n + 2^15 >= 0 in its low mantissa bits, so that j and m are a mask and a logical shift away.
void ExpNonPositive(double* v, int64_t n) {
  const std::array<double, 32>& table = Exp2Table();
  const __m128d inv_ln2_32 = _mm_set1_pd(46.166241308446828384);  // 32 / ln 2
  const __m128d ln2_32_hi = _mm_set1_pd(6.93147180369123816490e-01 / 32);
  const __m128d ln2_32_lo = _mm_set1_pd(1.90821492927058770002e-10 / 32);
  const double shifter = 0x1.8p52 + 32768.0;
  const __m128d magic = _mm_set1_pd(shifter);
  const __m128i magic_bits = _mm_castpd_si128(_mm_set1_pd(0x1.8p52));
  const __m128d min_x = _mm_set1_pd(kMinExpArgument);
  const __m128i low5 = _mm_set1_epi64x(31);
  // 2^m with m = ((n + 2^15) >> 5) - 2^10: exponent bits (m + 1023) << 52.
  const __m128i exponent_bias = _mm_set1_epi64x(1023 - 1024);
  const __m128d c2 = _mm_set1_pd(1.0 / 2), c3 = _mm_set1_pd(1.0 / 6), c4 = _mm_set1_pd(1.0 / 24);
  const __m128d c5 = _mm_set1_pd(1.0 / 120), c6 = _mm_set1_pd(1.0 / 720);
  const __m128d one = _mm_set1_pd(1.0);
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const __m128d x = _mm_loadu_pd(v + i);
    const __m128d t = _mm_add_pd(_mm_mul_pd(x, inv_ln2_32), magic);
    const __m128d nd = _mm_sub_pd(t, magic);
    __m128d r = _mm_sub_pd(x, _mm_mul_pd(nd, ln2_32_hi));
    r = _mm_sub_pd(r, _mm_mul_pd(nd, ln2_32_lo));
    __m128d p = _mm_add_pd(_mm_mul_pd(r, c6), c5);
    p = _mm_add_pd(_mm_mul_pd(p, r), c4);
    p = _mm_add_pd(_mm_mul_pd(p, r), c3);
    p = _mm_add_pd(_mm_mul_pd(p, r), c2);
    p = _mm_add_pd(_mm_mul_pd(p, r), one);
    p = _mm_add_pd(_mm_mul_pd(p, r), one);
    const __m128i biased = _mm_sub_epi64(_mm_castpd_si128(t), magic_bits);  // n + 2^15
    const __m128i j = _mm_and_si128(biased, low5);
    const __m128i exponent =
        _mm_slli_epi64(_mm_add_epi64(_mm_srli_epi64(biased, 5), exponent_bias), 52);
    const int j0 = _mm_cvtsi128_si32(j);
    const int j1 = _mm_cvtsi128_si32(_mm_unpackhi_epi64(j, j));
    const __m128d tj = _mm_set_pd(table[j1], table[j0]);
    __m128d y = _mm_mul_pd(_mm_mul_pd(p, tj), _mm_castsi128_pd(exponent));
    y = _mm_andnot_pd(_mm_cmplt_pd(x, min_x), y);  // 0 below the range; NaN stays NaN
    _mm_storeu_pd(v + i, y);
  }
  for (; i < n; ++i) v[i] = v[i] < kMinExpArgument ? 0.0 : std::exp(v[i]);
}

#else

// With AVX2 (or without SSE2) Eigen's vectorised exp, accurate in this range and fast, then the
// results of arguments below the range (exp is increasing) to 0.
void ExpNonPositive(double* v, int64_t n) {
  static const double min_result = std::exp(kMinExpArgument);
  Eigen::Map<Eigen::ArrayXd> all(v, n);
  all = all.exp();
  for (int64_t i = 0; i < n; ++i) v[i] = v[i] < min_result ? 0.0 : v[i];
}

#endif

}  // namespace emfit::internal
