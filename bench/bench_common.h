// Helpers shared by the benchmark programs of bench/: the emfit runners (built by CMake) and the
// reference programs (built by bench/compare with g++ against Armadillo or OpenCV). Plain C++17
// and the C library only, so every program can include it without linking anything.
//
// The files bench/compare writes are raw little-endian float64 arrays; their shapes travel on
// the command line:
//   data:  N x d values, row-major (one observation per row)
//   init:  weights (k), means (k x d, row-major), covariances in scikit-learn's layout flattened
//          to 2-D: full (k*d) x d, tied d x d, diag k x d, spherical k x 1.
#ifndef EMFIT_BENCH_BENCH_COMMON_H_
#define EMFIT_BENCH_BENCH_COMMON_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace emfit::bench {

[[noreturn]] inline void Die(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::exit(1);
}

// --name=value flags. Unknown flags are an error when Check() is called.
class Flags {
 public:
  Flags(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0) Die("unexpected argument '" + arg + "'");
      const size_t eq = arg.find('=');
      if (eq == std::string::npos) {
        values_[arg.substr(2)] = "true";
      } else {
        values_[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
      }
    }
  }

  std::string Str(const std::string& name, const std::string& fallback = "") {
    used_[name] = true;
    auto it = values_.find(name);
    if (it != values_.end()) return it->second;
    if (fallback.empty()) Die("missing flag --" + name);
    return fallback;
  }
  int64_t Int(const std::string& name, int64_t fallback = -1) {
    const std::string s = Str(name, fallback < 0 ? "" : std::to_string(fallback));
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (end == s.c_str() || *end != '\0') Die("--" + name + ": not an integer: '" + s + "'");
    return v;
  }
  double Double(const std::string& name, const std::string& fallback = "") {
    const std::string s = Str(name, fallback);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || *end != '\0') Die("--" + name + ": not a number: '" + s + "'");
    return v;
  }
  // Comma-separated integers, e.g. --chunk_values=8192,32768.
  std::vector<int64_t> IntList(const std::string& name, const std::string& fallback = "") {
    std::vector<int64_t> out;
    std::stringstream ss(Str(name, fallback));
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
    return out;
  }
  void Check() const {
    for (const auto& [name, value] : values_) {
      if (used_.count(name) == 0) Die("unknown flag --" + name);
    }
  }

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> used_;
};

// Reads exactly `count` float64 values from a raw file.
inline std::vector<double> ReadDoubles(const std::string& path, int64_t count) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) Die("cannot open " + path);
  const int64_t bytes = static_cast<int64_t>(in.tellg());
  if (bytes != count * static_cast<int64_t>(sizeof(double))) {
    Die(path + ": expected " + std::to_string(count) + " doubles, the file has " +
        std::to_string(bytes) + " bytes");
  }
  std::vector<double> out(static_cast<size_t>(count));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(out.data()), bytes);
  if (!in) Die("cannot read " + path);
  return out;
}

// Number of covariance values of the init file for a covariance type.
inline int64_t CovarianceValues(const std::string& type, int64_t k, int64_t d) {
  if (type == "full") return k * d * d;
  if (type == "tied") return d * d;
  if (type == "diag") return k * d;
  if (type == "spherical") return k;
  Die("unknown covariance type '" + type + "'");
}

// Starting parameters as read from an init file.
struct InitParams {
  std::vector<double> weights;      // k
  std::vector<double> means;        // k x d, row-major
  std::vector<double> covariances;  // scikit-learn layout, see the top of this file
};

inline InitParams ReadInit(const std::string& path, const std::string& type, int64_t k, int64_t d) {
  const int64_t nc = CovarianceValues(type, k, d);
  const std::vector<double> all = ReadDoubles(path, k + k * d + nc);
  InitParams p;
  p.weights.assign(all.begin(), all.begin() + k);
  p.means.assign(all.begin() + k, all.begin() + k + k * d);
  p.covariances.assign(all.begin() + k + k * d, all.end());
  return p;
}

// A value of /proc/self/status in KiB, e.g. "VmRSS" or "VmHWM" (peak RSS); -1 if unavailable.
inline int64_t ProcStatusKb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0)
      return std::strtoll(line.c_str() + field.size() + 1, nullptr, 10);
  }
  return -1;
}

// Resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0), so that a later VmHWM is the
// peak of what ran in between. Returns false if the kernel refused.
inline bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

inline double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Formats a double so that it reads back exactly.
inline std::string Exact(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

inline std::string JsonList(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + Exact(v[i]);
  return s + "]";
}

}  // namespace emfit::bench

#endif  // EMFIT_BENCH_BENCH_COMMON_H_
