#ifndef EMFIT_CORE_MATH_CONSTANTS_H_
#define EMFIT_CORE_MATH_CONSTANTS_H_

namespace emfit::internal {

inline constexpr double kLog2Pi = 1.8378770664093454835606594728112;  // ln(2 pi)

}  // namespace emfit::internal

#endif  // EMFIT_CORE_MATH_CONSTANTS_H_
