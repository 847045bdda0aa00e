// emfitd's logs: spdlog's default logger writing one line per record to stderr, as text or as
// one JSON object per line (--log_format), with structured fields.
#ifndef EMFIT_SERVER_LOGGING_H_
#define EMFIT_SERVER_LOGGING_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

namespace emfit::server {

enum class LogFormat { kText, kJson };
// "text" or "json".
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);

// Makes spdlog's default logger (named "emfitd") write to stderr in `format` at `level`, and
// routes gRPC's own log lines through it, so that in JSON every line is one object:
//   {"time":"2024-05-01T12:00:00.123Z","level":"info","msg":"call","method":"Fit",...}
// Text lines are spdlog's usual ones with the fields appended as key=value.
void InitLogging(LogFormat format, spdlog::level::level_enum level);

// One field of a structured record. Holds views: use it within the statement that logs.
class LogField {
 public:
  LogField(absl::string_view key, absl::string_view value)
      : key_(key), kind_(Kind::kString), text_(value) {}
  LogField(absl::string_view key, const std::string& value)
      : LogField(key, absl::string_view(value)) {}
  LogField(absl::string_view key, const char* value) : LogField(key, absl::string_view(value)) {}
  LogField(absl::string_view key, bool value) : key_(key), kind_(Kind::kBool), int_(value) {}
  LogField(absl::string_view key, double value) : key_(key), kind_(Kind::kDouble), double_(value) {}
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  LogField(absl::string_view key, T value)
      : key_(key),
        kind_(std::is_signed_v<T> ? Kind::kInt : Kind::kUint),
        int_(static_cast<int64_t>(value)) {}

  // Appends `"key":value` (JSON) or `key=value` (text) to `out`.
  void AppendJson(std::string* out) const;
  void AppendText(std::string* out) const;

 private:
  enum class Kind { kString, kInt, kUint, kDouble, kBool };
  absl::string_view key_;
  Kind kind_;
  absl::string_view text_;
  int64_t int_ = 0;
  double double_ = 0;
};

// Logs `message` with `fields` through the default logger.
void Log(spdlog::level::level_enum level, absl::string_view message,
         std::initializer_list<LogField> fields);

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view text);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_LOGGING_H_
