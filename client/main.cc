// emfit: command-line client of emfitd. The commands are written once for every model family;
// what differs by family (flags, data, reports) is the family's FamilyCli (family_cli.h).
//
// Exit status: 0 success; 1 an error (the server's code and message, a file that cannot be
// read or written); 2 a usage error, found before any file is read.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cli_flags.h"
#include "connection.h"
#include "emfit/base/cpu.h"
#include "family_cli.h"
#include "fit_client.h"
#include "health.h"
#include "model_io.h"
#include "out_file.h"
#include "progress.h"

#ifndef EMFIT_VERSION
#define EMFIT_VERSION "unknown"
#endif

namespace emfit::client {
namespace {

// The flags of the connection, shared by every command (connection.cc, health.cc).
const std::vector<std::string> kConnectionFlags = {"server",     "tls",     "tls_ca",
                                                   "tls_cert",   "tls_key", "tls_server_name",
                                                   "token_file", "retries", "max_message_bytes"};

struct CommandInfo {
  std::string name;
  std::string synopsis;
  std::string summary;
  std::vector<std::string> flags;  // shared ones; the family adds its own
};

const std::vector<CommandInfo>& Commands() {
  static const auto* commands = new std::vector<CommandInfo>{
      {"fit",
       "emfit fit --data=FILE.csv --family=gmm --k=2 [--out=FILE.json]",
       "Fits a model to the data, showing each iteration; prints the result.",
       {"data", "family", "header", "delimiter", "columns", "drop", "weights", "acceleration",
        "max_iter", "tol", "n_init", "seed", "ignore_feature_names", "out", "progress",
        "chunk_bytes", "timeout"}},
      {"posterior",
       "emfit posterior --model=FILE.json --data=FILE.csv [--out=FILE.csv]",
       "The E-step of a fitted model on data: each row's posterior, as CSV.",
       {"model", "data", "header", "delimiter", "columns", "drop", "ignore_feature_names", "out",
        "progress", "chunk_bytes", "timeout"}},
      {"score",
       "emfit score --model=FILE.json --data=FILE.csv [--out=FILE.json]",
       "The log-likelihood, BIC and AIC of data under a fitted model.",
       {"model", "data", "header", "delimiter", "columns", "drop", "weights",
        "ignore_feature_names", "out", "progress", "chunk_bytes", "timeout"}},
      {"select",
       "emfit select --data=FILE.csv --k=1..9 --covariance=full,diag,tied,spherical",
       "Fits a grid of candidate models in parallel and picks the best by BIC or AIC.",
       {"data", "family", "header", "delimiter", "columns", "drop", "weights", "acceleration",
        "max_iter", "tol", "n_init", "seed", "criterion", "out", "progress", "chunk_bytes",
        "timeout"}},
      {"simmap",
       "emfit simmap --model=MK.json --tree=TREE.nwk --tips=TIPS.csv --n=1000 [--out=maps.txt]",
       "Stochastic character maps of an Mk model, one SIMMAP tree per line, and their summary.",
       {"model", "header", "delimiter", "n", "seed", "sampler", "out", "summary_out", "progress",
        "chunk_bytes", "timeout"}},
      {"health",
       "emfit health [--service=emfit.v1.EmFitService]",
       "Checks the server's health (exit status 0 only when SERVING).",
       {"service", "timeout"}},
  };
  return *commands;
}

Command CommandOf(const CommandInfo& c) {
  return c.name == "fit"         ? Command::kFit
         : c.name == "posterior" ? Command::kPosterior
         : c.name == "score"     ? Command::kScore
         : c.name == "simmap"    ? Command::kSimmap
                                 : Command::kSelect;
}

const CommandInfo* FindCommand(absl::string_view name) {
  for (const CommandInfo& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string FlagLine(const std::string& name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr) return "";
  const std::string value = flag->DefaultValue();
  return absl::StrFormat("  --%s%s\n      %s\n", name, value.empty() ? "" : "=" + value,
                         flag->Help());
}

std::string Overview() {
  std::string out =
      "emfit: fit models by EM on an emfitd server (families: " + FamilyNames() + ").\n\n";
  for (const CommandInfo& c : Commands()) {
    absl::StrAppend(&out, absl::StrFormat("  %-10s %s\n", c.name, c.summary));
  }
  absl::StrAppend(&out,
                  "\n`emfit COMMAND --help` shows a command's flags; `emfit --version` the "
                  "version and build.\nExit status: 0 success, 1 error, 2 usage error.\n");
  return out;
}

bool TakesModel(Command command) {
  return command == Command::kPosterior || command == Command::kScore ||
         command == Command::kSimmap;
}

// A command's help: its shared flags, then the family's own. Commands that read --model take
// the flags of the model's family, so they list every family's (or only that of --family when
// given); fit and select list those of --family (gmm by default).
std::string CommandHelp(const CommandInfo& c, const FamilyCli* family) {
  const Command which = CommandOf(c);
  std::string out = absl::StrFormat("%s\n\n  %s\n\nFlags:\n", c.summary, c.synopsis);
  const std::vector<std::string> ignored = family == nullptr || TakesModel(which)
                                               ? std::vector<std::string>()
                                               : family->IgnoredFlags(which);
  const auto shown = [&](const std::string& f) {
    return std::find(ignored.begin(), ignored.end(), f) == ignored.end();
  };
  for (const std::string& f : c.flags) {
    if (shown(f)) absl::StrAppend(&out, FlagLine(f));
  }
  std::vector<const FamilyCli*> families;
  if (c.name == "health") {
    // No model.
  } else if (family != nullptr) {
    families.push_back(family);
  } else {
    for (absl::string_view name : absl::StrSplit(FamilyNames(), ", ")) {
      families.push_back(FindFamily(name));
    }
  }
  for (const FamilyCli* f : families) {
    if (which == Command::kSimmap && !f->DrawsHistories()) continue;
    std::vector<std::string> own;
    for (const std::string& flag : f->Flags(which)) {
      if (f != family || shown(flag)) own.push_back(flag);
    }
    if (own.empty()) continue;
    absl::StrAppend(&out, "\n",
                    TakesModel(which) ? absl::StrCat("Flags for ", f->name(), " models:\n")
                                      : absl::StrCat("Flags of ", f->Variant(), ":\n"));
    for (const std::string& flag : own) absl::StrAppend(&out, FlagLine(flag));
  }
  absl::StrAppend(&out, "\nConnection:\n");
  for (const std::string& f : kConnectionFlags) absl::StrAppend(&out, FlagLine(f));
  return out;
}

std::string Version() {
  const int level = X86Level();
  return absl::StrFormat("emfit %s (portable build; emfitd on this CPU starts its %s build)\n",
                         EMFIT_VERSION,
                         level >= 4   ? "x86-64-v4"
                         : level == 3 ? "x86-64-v3"
                                      : "portable");
}

struct Args {
  std::string command;
  std::set<std::string> given;  // flags set on the command line
  bool help = false;
  bool version = false;
};

// Parses the command line into the flags (absl's registry) and the command. Unknown flags, bad
// values and stray arguments are usage errors (absl::ParseCommandLine would exit 1 on them).
absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "-help" || arg == "--helpfull") {
      args.help = true;
      continue;
    }
    if (arg == "--version" || arg == "-version") {
      args.version = true;
      continue;
    }
    if (!absl::StartsWith(arg, "-") || arg == "-") {
      if (!args.command.empty()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("unexpected argument '%s' after the command '%s'", arg, args.command));
      }
      args.command = std::string(arg);
      continue;
    }
    arg.remove_prefix(absl::StartsWith(arg, "--") ? 2 : 1);
    std::string name(arg), value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) {
        flag = negated;
        name = name.substr(2);
        value = "false";
        has_value = true;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("unknown flag --%s", name));
    }
    if (!has_value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc && !absl::StartsWith(argv[i + 1], "--")) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrFormat("--%s: missing value", name));
      }
    }
    if (args.given.count(name)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--%s: given more than once (a list is one comma-separated value)", name));
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrFormat("--%s: %s", name, error));
    }
    args.given.insert(name);
  }
  return args;
}

int Report(const absl::Status& status) {
  std::fprintf(stderr, "emfit: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

int Usage(const absl::Status& status) {
  std::fprintf(stderr, "emfit: %s\n(see emfit --help)\n", std::string(status.message()).c_str());
  return 2;
}

absl::Status CheckTimeoutFlag() {
  if (const double t = absl::GetFlag(FLAGS_timeout); !(t >= 0) || std::isinf(t)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--timeout: must be a number of seconds >= 0; got %g", t));
  }
  return absl::OkStatus();
}

// Checks of the shared flags of `command`, before any file is read: flags given that the
// command does not use (neither shared, nor the connection's, nor in `family_flags`) are errors,
// and so are those the family (`family`, if known) ignores as its other flags set it up
// (FamilyCli::IgnoredFlags), so that a mistyped command line does not silently run something
// else.
absl::Status CheckSharedFlags(const CommandInfo& command, const std::set<std::string>& given,
                              const std::set<std::string>& family_flags,
                              const FamilyCli* family = nullptr) {
  std::set<std::string> relevant(command.flags.begin(), command.flags.end());
  if (family != nullptr) {
    for (const std::string& f : family->IgnoredFlags(CommandOf(command))) {
      if (given.count(f)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("--%s: does not apply to %s", f, family->Variant()));
      }
      relevant.erase(f);
    }
  }
  for (const std::string& flag : given) {
    if (!relevant.count(flag) && !family_flags.count(flag) &&
        std::find(kConnectionFlags.begin(), kConnectionFlags.end(), flag) ==
            kConnectionFlags.end()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--%s: not a flag of `emfit %s`", flag, command.name));
    }
  }
  if (given.count("summary_out") && absl::GetFlag(FLAGS_summary_out) == "-" &&
      (absl::GetFlag(FLAGS_out).empty() || absl::GetFlag(FLAGS_out) == "-")) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--summary_out=-: `emfit %s` writes its --out to standard output already; give one of "
        "them a file",
        command.name));
  }
  if (relevant.count("model") && absl::GetFlag(FLAGS_model).empty()) {
    return absl::InvalidArgumentError(
        "--model: a model JSON (e.g. written by `emfit fit --out`) is required");
  }
  if (relevant.count("header")) {
    const std::string header = absl::GetFlag(FLAGS_header);
    if (header != "auto" && header != "yes" && header != "no") {
      return absl::InvalidArgumentError(
          absl::StrFormat("--header: must be auto, yes or no; got '%s'", header));
    }
    if (absl::Status s = ParseDelimiter(absl::GetFlag(FLAGS_delimiter)).status(); !s.ok()) {
      return s;
    }
  }
  if (relevant.count("progress")) {
    const std::string p = absl::GetFlag(FLAGS_progress);
    if (p != "auto" && p != "line" && p != "log" && p != "none") {
      return absl::InvalidArgumentError(
          absl::StrFormat("--progress: must be one of auto, line, log, none; got '%s'", p));
    }
  }
  if (relevant.count("chunk_bytes") && absl::GetFlag(FLAGS_chunk_bytes) < 8) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--chunk_bytes: must be >= 8 (one value); got %d", absl::GetFlag(FLAGS_chunk_bytes)));
  }
  if (absl::Status s = CheckTimeoutFlag(); !s.ok()) return s;
  if (absl::Status s = CheckConnectionOptions(ConnectionOptionsFromFlags()); !s.ok()) return s;
  if (absl::Status s = CheckResends(ResendsFromFlags()); !s.ok()) return s;
  if (relevant.count("n_init")) {
    if (absl::GetFlag(FLAGS_n_init) < 1) {
      return absl::InvalidArgumentError("--n_init: must be >= 1");
    }
    if (const auto m = absl::GetFlag(FLAGS_max_iter); m.has_value() && *m < 0) {
      return absl::InvalidArgumentError("--max_iter: must be >= 0");
    }
    if (const auto t = absl::GetFlag(FLAGS_tol); t.has_value() && !(*t >= 0)) {
      return absl::InvalidArgumentError("--tol: must be >= 0");
    }
    if (absl::Status s = ParseShortName(v1::Acceleration_descriptor(),
                                        absl::GetFlag(FLAGS_acceleration), "--acceleration")
                             .status();
        !s.ok()) {
      return s;
    }
  }
  if (relevant.count("n") && absl::GetFlag(FLAGS_n) < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--n: draw at least one map; got %d", absl::GetFlag(FLAGS_n)));
  }
  if (relevant.count("sampler")) {
    if (absl::Status s =
            ParseShortName(v1::PathSampler_descriptor(), absl::GetFlag(FLAGS_sampler), "--sampler")
                .status();
        !s.ok()) {
      return s;
    }
  }
  if (relevant.count("criterion")) {
    const std::string c = absl::AsciiStrToLower(absl::GetFlag(FLAGS_criterion));
    if (c != "bic" && c != "aic") return absl::InvalidArgumentError("--criterion: bic or aic");
  }
  return absl::OkStatus();
}

v1::FitOptions OptionsFromFlags() {
  v1::FitOptions o;
  if (const auto m = absl::GetFlag(FLAGS_max_iter); m.has_value()) {
    o.set_max_iter(static_cast<uint32_t>(*m));
  }
  if (const auto t = absl::GetFlag(FLAGS_tol); t.has_value()) o.set_tol(*t);
  o.set_n_init(static_cast<uint32_t>(absl::GetFlag(FLAGS_n_init)));
  o.set_seed(absl::GetFlag(FLAGS_seed));
  o.set_acceleration(static_cast<v1::Acceleration>(
      *ParseShortName(v1::Acceleration_descriptor(), absl::GetFlag(FLAGS_acceleration), "")));
  return o;
}

ProgressMode ProgressFlag() {
  const std::string p = absl::GetFlag(FLAGS_progress);
  return p == "line"   ? ProgressMode::kLine
         : p == "log"  ? ProgressMode::kLog
         : p == "none" ? ProgressMode::kNone
                       : ProgressMode::kAuto;
}

// A line for the user on standard error, unless --progress=none.
void Note(const std::string& line) {
  if (absl::GetFlag(FLAGS_progress) != "none") std::fprintf(stderr, "%s\n", line.c_str());
}

CallOptions CallFlags() {
  CallOptions call;
  call.chunk_values = std::max<size_t>(1, absl::GetFlag(FLAGS_chunk_bytes) / sizeof(double));
  if (absl::GetFlag(FLAGS_timeout) > 0) call.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  call.on_resend = [](const absl::Status& status, int attempt) {
    Note(absl::StrFormat("emfit: sending the call again (attempt %d of %d) after %s: %s", attempt,
                         ResendsFromFlags() + 1, absl::StatusCodeToString(status.code()),
                         status.message()));
  };
  return call;
}

// Writes the report `text` to standard output, or to standard error when standard output
// carries the JSON (--out=-).
void PrintReport(const std::string& text) {
  std::fputs(text.c_str(), absl::GetFlag(FLAGS_out) == "-" ? stderr : stdout);
}

absl::Status WriteOut(const google::protobuf::Message& message) {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return absl::OkStatus();
  if (absl::Status s = WriteJson(message, "--out", out); !s.ok()) return s;
  if (out != "-") Note("wrote " + out);
  return absl::OkStatus();
}

int RunFit(const FamilyCli& family) {
  absl::StatusOr<v1::ModelSpec> spec = family.SpecFromFlags();
  if (!spec.ok()) return Usage(spec.status());
  v1::FitHeader header;
  *header.mutable_spec() = *std::move(spec);
  *header.mutable_options() = OptionsFromFlags();
  header.set_ignore_feature_names(absl::GetFlag(FLAGS_ignore_feature_names));
  // The channel first: its files (TLS, token) are read before the data (which may be stdin).
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectFromFlags();
  if (!channel.ok()) return Report(channel.status());
  if (const std::string path = absl::GetFlag(FLAGS_init_model); !path.empty()) {
    absl::StatusOr<v1::Model> model = ReadModelJson(path);
    if (!model.ok()) return Report(model.status());
    *header.mutable_init() = *std::move(model);
  }
  absl::StatusOr<LoadedData> data = family.LoadData(Command::kFit, nullptr);
  if (!data.ok()) return Report(data.status());
  Note(data->description);
  header.mutable_spec()->MergeFrom(data->spec_from_data);
  *header.mutable_shape() = data->shape;
  data->View().DescribeIn(header.mutable_shape());
  Note("fitting on " + absl::GetFlag(FLAGS_server));
  FitClient client(*channel);
  ProgressPrinter progress(ProgressFlag());
  absl::StatusOr<v1::FitResult> result = client.Fit(
      header, data->View(), [&](const v1::FitEvent& e) { progress.OnEvent(e); }, CallFlags());
  progress.Close();
  if (!result.ok()) return Report(result.status());
  PrintReport(FormatSummary(result->summary()) + family.FormatModel(result->model()) +
              family.FormatResult(*result));
  if (absl::Status s = WriteOut(*result); !s.ok()) return Report(s);
  return 0;
}

// The model of --model and its family (which --family, if given, must name).
absl::StatusOr<std::pair<v1::Model, const FamilyCli*>> ModelFromFlags(
    const std::set<std::string>& given) {
  absl::StatusOr<v1::Model> model = ReadModelJson(absl::GetFlag(FLAGS_model));
  if (!model.ok()) return model.status();
  const FamilyCli* family = FamilyOf(*model);
  if (family == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: a model of a family this client does not know (it knows %s)",
                        absl::GetFlag(FLAGS_model), FamilyNames()));
  }
  if (given.count("family") && absl::GetFlag(FLAGS_family) != family->name()) {
    return absl::InvalidArgumentError(absl::StrFormat("--family=%s, but %s holds a %s model",
                                                      absl::GetFlag(FLAGS_family),
                                                      absl::GetFlag(FLAGS_model), family->name()));
  }
  return std::make_pair(*std::move(model), family);
}

// The flags of `command` for the family of the model read from --model.
absl::Status CheckModelFamilyFlags(const CommandInfo& command, const std::set<std::string>& given,
                                   const FamilyCli& family) {
  const Command which = CommandOf(command);
  const std::vector<std::string> own = family.Flags(which);
  std::set<std::string> family_flags(own.begin(), own.end());
  family_flags.insert("family");
  if (absl::Status s = CheckSharedFlags(command, given, family_flags, &family); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s (for the %s model of --model)", s.message(), family.name()));
  }
  return family.CheckFlags(which);
}

// What posterior, score and simmap send: the model of --model, its family, the data and the
// header.
struct ModelRequest {
  std::shared_ptr<grpc::Channel> channel;
  v1::Model model;
  const FamilyCli* family = nullptr;
  LoadedData data;
  v1::PosteriorHeader header;
};

// Reads --model and the data for `command`; `exit` receives the exit status on failure.
std::optional<ModelRequest> PrepareModelRequest(const CommandInfo& command,
                                                const std::set<std::string>& given, int* exit) {
  // The channel first: its files (TLS, token) are read before the data (which may be stdin).
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectFromFlags();
  if (!channel.ok()) {
    *exit = Report(channel.status());
    return std::nullopt;
  }
  auto model = ModelFromFlags(given);
  if (!model.ok()) {
    *exit = Report(model.status());
    return std::nullopt;
  }
  ModelRequest r{*std::move(channel), std::move(model->first), model->second, {}, {}};
  if (CommandOf(command) == Command::kSimmap && !r.family->DrawsHistories()) {
    *exit = Usage(absl::InvalidArgumentError(
        absl::StrFormat("--model: stochastic maps are drawn from Mk models; %s holds a %s model",
                        absl::GetFlag(FLAGS_model), r.family->name())));
    return std::nullopt;
  }
  if (absl::Status s = CheckModelFamilyFlags(command, given, *r.family); !s.ok()) {
    *exit = Usage(s);
    return std::nullopt;
  }
  absl::StatusOr<LoadedData> data = r.family->LoadData(CommandOf(command), &r.model);
  if (!data.ok()) {
    *exit = Report(data.status());
    return std::nullopt;
  }
  r.data = *std::move(data);
  Note(r.data.description);
  *r.header.mutable_model() = r.model;
  *r.header.mutable_shape() = r.data.shape;
  r.data.View().DescribeIn(r.header.mutable_shape());
  r.header.set_ignore_feature_names(absl::GetFlag(FLAGS_ignore_feature_names));
  return r;
}

int RunPosterior(const CommandInfo& command, const std::set<std::string>& given) {
  int exit = 0;
  std::optional<ModelRequest> request = PrepareModelRequest(command, given, &exit);
  if (!request.has_value()) return exit;
  const FamilyCli& family = *request->family;
  const v1::PosteriorHeader& header = request->header;
  const LoadedData* data = &request->data;
  // Both outputs are opened before the call, so that one that cannot be written costs no call.
  OutFile out("--out", absl::GetFlag(FLAGS_out));
  if (!out.ok()) return Report(out.Error());
  std::unique_ptr<OutFile> summary;
  if (const std::string path = absl::GetFlag(FLAGS_summary_out); !path.empty()) {
    summary = std::make_unique<OutFile>("--summary_out", path);
    if (!summary->ok()) return Report(summary->Error());
  }
  FitClient client(request->channel);
  std::unique_ptr<PosteriorSink> sink =
      family.NewPosteriorSink(request->model, request->data, &out);
  CallCancel cancel;
  CallOptions call = CallFlags();
  call.cancel = &cancel;
  absl::Status written;
  absl::Status status = client.Posterior(
      header, data->View(),
      [&](const v1::PosteriorResponse& r) {
        if (!written.ok()) return;
        written = sink->Block(r);
        if (!written.ok()) cancel.Cancel();  // nothing more can be written
      },
      call);
  if (!written.ok()) return Report(written);
  if (!status.ok()) return Report(status);  // the temporary files go: nothing is written
  const PosteriorDone done = sink->Finish();
  if (!out.Commit()) return Report(out.Error());
  std::string note = absl::StrCat(done.note, out.to_stdout() ? "" : " written to " + out.name());
  if (summary != nullptr) {
    // The posteriors are kept when their summary cannot be written.
    summary->Write(done.summary);
    if (!summary->Commit()) {
      Note(note);
      return Report(summary->Error());
    }
    absl::StrAppend(&note, "; ", done.summary_what, " in ", summary->name());
  }
  Note(note);
  return 0;
}

int RunScore(const CommandInfo& command, const std::set<std::string>& given) {
  int exit = 0;
  std::optional<ModelRequest> request = PrepareModelRequest(command, given, &exit);
  if (!request.has_value()) return exit;
  const v1::PosteriorHeader& header = request->header;
  const LoadedData* data = &request->data;
  FitClient client(request->channel);
  absl::StatusOr<v1::ScoreResponse> score = client.Score(header, data->View(), CallFlags());
  if (!score.ok()) return Report(score.status());
  PrintReport(absl::StrFormat(
      "log-likelihood %.6f (%.6f per row)  BIC %.4f  AIC %.4f  free parameters %lu  rows %lu\n",
      score->log_likelihood(), score->mean_log_likelihood(), score->bic(), score->aic(),
      static_cast<unsigned long>(score->num_free_parameters()),
      static_cast<unsigned long>(score->rows())));
  if (absl::Status s = WriteOut(*score); !s.ok()) return Report(s);
  return 0;
}

int RunSimmap(const CommandInfo& command, const std::set<std::string>& given) {
  int exit = 0;
  std::optional<ModelRequest> request = PrepareModelRequest(command, given, &exit);
  if (!request.has_value()) return exit;
  const FamilyCli& family = *request->family;
  const LoadedData* data = &request->data;
  v1::SampleHistoriesHeader header;
  *header.mutable_model() = request->model;
  *header.mutable_shape() = request->header.shape();
  header.set_n(static_cast<uint32_t>(absl::GetFlag(FLAGS_n)));
  header.set_seed(absl::GetFlag(FLAGS_seed));
  header.set_sampler(static_cast<v1::PathSampler>(
      *ParseShortName(v1::PathSampler_descriptor(), absl::GetFlag(FLAGS_sampler), "")));
  OutFile out("--out", absl::GetFlag(FLAGS_out));
  if (!out.ok()) return Report(out.Error());
  std::unique_ptr<OutFile> summary_out;
  if (const std::string path = absl::GetFlag(FLAGS_summary_out); !path.empty()) {
    summary_out = std::make_unique<OutFile>("--summary_out", path);
    if (!summary_out->ok()) return Report(summary_out->Error());
  }
  FitClient client(request->channel);
  CallCancel cancel;
  CallOptions call = CallFlags();
  call.cancel = &cancel;
  uint64_t drawn = 0;
  absl::StatusOr<v1::HistoriesSummary> summary = client.SampleHistories(
      header, data->View(),
      [&](const v1::SampleHistoriesResponse& r) {
        if (!out.ok()) return;
        for (const std::string& line : r.simmap()) out.Write(line + "\n");
        drawn += r.simmap_size();
        if (!out.ok()) cancel.Cancel();  // nothing more can be written
      },
      call);
  if (!out.ok()) return Report(out.Error());
  if (!summary.ok()) return Report(summary.status());
  if (!out.Commit()) return Report(out.Error());
  Note(absl::StrFormat("%d maps written to %s", drawn, out.name()));
  if (summary_out != nullptr) {
    absl::StatusOr<std::string> json = ToJson(*summary);
    if (!json.ok()) return Report(json.status());
    summary_out->Write(*json);
    if (!summary_out->Commit()) return Report(summary_out->Error());
    if (!summary_out->to_stdout()) Note("wrote " + summary_out->name());
  }
  // The maps or their summary may be on standard output: the report goes to standard error then.
  const bool stdout_taken = out.to_stdout() || (summary_out != nullptr && summary_out->to_stdout());
  const std::string report = family.FormatHistories(request->model, *summary);
  std::fputs(report.c_str(), stdout_taken ? stderr : stdout);
  return 0;
}

int RunSelect(const FamilyCli& family) {
  v1::SelectModelHeader header;
  if (absl::Status s = family.GridFromFlags(&header); !s.ok()) return Usage(s);
  *header.mutable_options() = OptionsFromFlags();
  header.set_criterion(absl::AsciiStrToLower(absl::GetFlag(FLAGS_criterion)) == "aic"
                           ? v1::CRITERION_AIC
                           : v1::CRITERION_BIC);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectFromFlags();
  if (!channel.ok()) return Report(channel.status());
  absl::StatusOr<LoadedData> data = family.LoadData(Command::kSelect, nullptr);
  if (!data.ok()) return Report(data.status());
  Note(data->description);
  header.mutable_spec()->MergeFrom(data->spec_from_data);
  *header.mutable_shape() = data->shape;
  data->View().DescribeIn(header.mutable_shape());
  FitClient client(*channel);
  const bool show = ProgressFlag() != ProgressMode::kNone;
  absl::Mutex mu;  // events of candidates arrive in order, but keep the lines whole
  absl::StatusOr<v1::SelectionResult> result = client.SelectModel(
      header, data->View(),
      [&](const v1::SelectModelEvent& e) {
        absl::MutexLock lock(&mu);
        if (e.has_warning()) {
          std::fprintf(stderr, "warning [%s]: %s\n", e.warning().code().c_str(),
                       e.warning().message().c_str());
        } else if (show && e.has_accepted()) {
          std::fprintf(stderr, "accepted as %s\n", e.accepted().job_id().c_str());
        } else if (show && e.has_candidate_done()) {
          const v1::Candidate& c = e.candidate_done();
          std::fprintf(
              stderr, "candidate %2u  %s  %s\n", c.index(), family.CandidateLabel(c).c_str(),
              c.error().empty() ? absl::StrFormat("log-likelihood %.4f  BIC %.4f  %u iterations",
                                                  c.summary().log_likelihood(), c.summary().bic(),
                                                  c.summary().iterations())
                                      .c_str()
                                : ("failed: " + c.error()).c_str());
        }
      },
      CallFlags());
  if (!result.ok()) return Report(result.status());
  std::string report = absl::StrFormat("%s %16s %14s %14s %6s  %s\n", family.CandidateHeader(),
                                       "log-likelihood", "BIC", "AIC", "params", "outcome");
  for (const v1::Candidate& c : result->candidates()) {
    if (!c.error().empty()) {
      absl::StrAppend(&report, family.CandidateLabel(c), " ", c.error(), "\n");
      continue;
    }
    absl::StrAppend(
        &report,
        absl::StrFormat("%s %16.4f %14.4f %14.4f %6lu  %s%s\n", family.CandidateLabel(c),
                        c.summary().log_likelihood(), c.summary().bic(), c.summary().aic(),
                        static_cast<unsigned long>(c.summary().num_free_parameters()),
                        ShortName(v1::TerminationReason_descriptor(), c.summary().reason()),
                        c.index() == result->best() ? "  <- best" : ""));
  }
  const v1::Candidate& best = result->candidates(result->best());
  absl::StrAppend(&report, "\nbest by ", absl::AsciiStrToLower(absl::GetFlag(FLAGS_criterion)),
                  ": ", absl::StripTrailingAsciiWhitespace(family.CandidateLabel(best)), "\n\n",
                  FormatSummary(result->best_fit().summary()),
                  family.FormatModel(result->best_fit().model()),
                  family.FormatResult(result->best_fit()));
  PrintReport(report);
  if (absl::Status s = WriteOut(*result); !s.ok()) return Report(s);
  return 0;
}

int Main(int argc, char** argv) {
  absl::StatusOr<Args> args = ParseArgs(argc, argv);
  if (!args.ok()) return Usage(args.status());
  if (args->version) {
    std::fputs(Version().c_str(), stdout);
    return 0;
  }
  const CommandInfo* command = FindCommand(args->command);
  if (args->help) {
    if (command == nullptr) {
      std::fputs(Overview().c_str(), stdout);
    } else {
      // Commands that read --model show every family's flags unless --family names one.
      const bool every = (TakesModel(CommandOf(*command)) && !args->given.count("family")) ||
                         command->name == "health";
      const FamilyCli* family = every ? nullptr : FindFamily(absl::GetFlag(FLAGS_family));
      if (family == nullptr && !every) {
        return Usage(absl::InvalidArgumentError(absl::StrFormat(
            "--family: must be one of %s; got '%s'", FamilyNames(), absl::GetFlag(FLAGS_family))));
      }
      std::fputs(CommandHelp(*command, family).c_str(), stdout);
    }
    return 0;
  }
  if (args->command.empty()) {
    std::fputs(Overview().c_str(), stderr);
    return 2;
  }
  if (command == nullptr) {
    return Usage(
        absl::InvalidArgumentError(absl::StrFormat("unknown command '%s'", args->command)));
  }
  if (command->name == "health") {
    if (absl::Status s = CheckSharedFlags(*command, args->given, {}); !s.ok()) return Usage(s);
    const double t = absl::GetFlag(FLAGS_timeout);
    return RunHealthCommand(t > 0 ? absl::Seconds(t) : absl::InfiniteDuration());
  }
  const Command which = CommandOf(*command);
  if (which == Command::kPosterior || which == Command::kScore || which == Command::kSimmap) {
    // The family is the model's, known once --model is read: any family's flags may apply.
    std::set<std::string> family_flags{"family"};
    for (absl::string_view name : absl::StrSplit(FamilyNames(), ", ")) {
      for (const std::string& f : FindFamily(name)->Flags(which)) family_flags.insert(f);
    }
    if (absl::Status s = CheckSharedFlags(*command, args->given, family_flags); !s.ok()) {
      return Usage(s);
    }
    return which == Command::kPosterior ? RunPosterior(*command, args->given)
           : which == Command::kScore   ? RunScore(*command, args->given)
                                        : RunSimmap(*command, args->given);
  }
  const FamilyCli* family = FindFamily(absl::GetFlag(FLAGS_family));
  if (family == nullptr) {
    return Usage(absl::InvalidArgumentError(absl::StrFormat(
        "--family: must be one of %s; got '%s'", FamilyNames(), absl::GetFlag(FLAGS_family))));
  }
  const std::vector<std::string> own = family->Flags(which);
  if (absl::Status s = CheckSharedFlags(*command, args->given, {own.begin(), own.end()}, family);
      !s.ok()) {
    return Usage(s);
  }
  if (absl::Status s = family->CheckFlags(which); !s.ok()) return Usage(s);
  return which == Command::kFit ? RunFit(*family) : RunSelect(*family);
}

}  // namespace
}  // namespace emfit::client

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG: absl::Mutex (which gRPC locks with too) would keep
  // a process-wide lock-order graph for deadlock detection on every acquisition.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return emfit::client::Main(argc, argv);
}
