#include "logging.h"

#include <grpc/support/log.h>

#include <chrono>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace emfit::server {
namespace {

// The fields of the record that the calling thread is logging (set by Log() around its
// synchronous call into spdlog, which formats on the calling thread); null for plain spdlog
// calls.
thread_local const std::initializer_list<LogField>* current_fields = nullptr;

// Formats every record: JSON objects, or spdlog's default pattern with the fields appended.
class RecordFormatter final : public spdlog::formatter {
 public:
  explicit RecordFormatter(LogFormat format)
      : format_(format),
        text_(std::make_unique<spdlog::pattern_formatter>("[%Y-%m-%d %H:%M:%S.%e] [%n] [%l] %v")) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const absl::string_view payload(msg.payload.data(), msg.payload.size());
    std::string line;
    if (format_ == LogFormat::kJson) {
      line = absl::StrCat(
          "{\"time\":\"",
          absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromChrono(msg.time), absl::UTCTimeZone()),
          "\",\"level\":\"",
          absl::string_view(spdlog::level::to_string_view(msg.level).data(),
                            spdlog::level::to_string_view(msg.level).size()),
          "\",\"msg\":", JsonQuote(payload));
      if (current_fields != nullptr) {
        for (const LogField& f : *current_fields) {
          line += ',';
          f.AppendJson(&line);
        }
      }
      line += "}\n";
      dest.append(line.data(), line.data() + line.size());
      return;
    }
    line = std::string(payload);
    if (current_fields != nullptr) {
      for (const LogField& f : *current_fields) {
        line += ' ';
        f.AppendText(&line);
      }
    }
    spdlog::details::log_msg with_fields = msg;
    with_fields.payload = spdlog::string_view_t(line.data(), line.size());
    text_->format(with_fields, dest);
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<RecordFormatter>(format_);
  }

 private:
  const LogFormat format_;
  std::unique_ptr<spdlog::pattern_formatter> text_;
};

// gRPC's own log lines (connection errors, ...) go through our logger too.
void LogFromGrpc(gpr_log_func_args* args) {
  spdlog::level::level_enum level = spdlog::level::info;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) level = spdlog::level::err;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = spdlog::level::debug;
  Log(level, args->message,
      {{"source", "grpc"},
       {"file", args->file != nullptr ? args->file : ""},
       {"line", args->line}});
}

bool NeedsQuotes(absl::string_view text) {
  if (text.empty()) return true;
  for (char c : text) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

std::string FormatDouble(double value) {
  if (!std::isfinite(value)) return "null";  // JSON has no NaN or infinity
  return absl::StrFormat("%.6g", value);
}

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrFormat("--log_format: must be text or json, got '%s'", name));
}

void InitLogging(LogFormat format, spdlog::level::level_enum level) {
  auto logger =
      std::make_shared<spdlog::logger>("emfitd", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_formatter(std::make_unique<RecordFormatter>(format));
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  gpr_set_log_function(&LogFromGrpc);
}

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

void LogField::AppendJson(std::string* out) const {
  absl::StrAppend(out, JsonQuote(key_), ":");
  switch (kind_) {
    case Kind::kString:
      absl::StrAppend(out, JsonQuote(text_));
      break;
    case Kind::kInt:
      absl::StrAppend(out, int_);
      break;
    case Kind::kUint:
      absl::StrAppend(out, static_cast<uint64_t>(int_));
      break;
    case Kind::kDouble:
      absl::StrAppend(out, FormatDouble(double_));
      break;
    case Kind::kBool:
      absl::StrAppend(out, int_ != 0 ? "true" : "false");
      break;
  }
}

void LogField::AppendText(std::string* out) const {
  absl::StrAppend(out, key_, "=");
  switch (kind_) {
    case Kind::kString:
      absl::StrAppend(out, NeedsQuotes(text_) ? JsonQuote(text_) : std::string(text_));
      break;
    case Kind::kInt:
      absl::StrAppend(out, int_);
      break;
    case Kind::kUint:
      absl::StrAppend(out, static_cast<uint64_t>(int_));
      break;
    case Kind::kDouble:
      absl::StrAppend(out, FormatDouble(double_));
      break;
    case Kind::kBool:
      absl::StrAppend(out, int_ != 0 ? "true" : "false");
      break;
  }
}

void Log(spdlog::level::level_enum level, absl::string_view message,
         std::initializer_list<LogField> fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  const std::initializer_list<LogField>* outer = current_fields;
  current_fields = &fields;
  logger->log(level, spdlog::string_view_t(message.data(), message.size()));
  current_fields = outer;
}

}  // namespace emfit::server
