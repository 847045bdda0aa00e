// Which of emfitd's x86-64 builds this CPU can run (server/CMakeLists.txt, "dispatch").
#ifndef EMFIT_CORE_BASE_CPU_H_
#define EMFIT_CORE_BASE_CPU_H_

namespace emfit {

// 4 for x86-64-v4 (AVX-512 F, BW, CD, DQ, VL and v3), 3 for x86-64-v3 (AVX2 and FMA), 0 for
// neither or another architecture.
inline int X86Level() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
  const bool v4 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
  return v4 ? 4 : 3;
#else
  return 0;
#endif
}

}  // namespace emfit

#endif  // EMFIT_CORE_BASE_CPU_H_
