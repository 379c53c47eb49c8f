#include "version_keeper.h"

#include <curl/curl.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"

namespace wasentinel::session {
namespace {

// What a browser sends for the page (whatsmeow update.go sends a desktop Chrome's headers; the
// page served to unknown agents may lack the version).
constexpr char kUserAgent[] =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/148.0.0.0 Safari/537.36";

struct Page {
  std::string body;
  size_t max = 0;
  bool too_big = false;
};

size_t Collect(char* data, size_t size, size_t count, void* user) {
  auto* page = static_cast<Page*>(user);
  const size_t n = size * count;
  if (page->body.size() + n > page->max) {
    page->too_big = true;
    return 0;  // ends the transfer
  }
  page->body.append(data, n);
  return n;
}

// GET `options.url`, bounded in time and size.
absl::StatusOr<std::string> Fetch(const VersionOptions& options) {
  static std::once_flag curl_ready;
  std::call_once(curl_ready, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return absl::InternalError("libcurl could not start a transfer");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(nullptr, curl_slist_free_all);
  for (const char* h : {"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                        "Accept-Language: en-US,en;q=0.9", "Sec-Fetch-Dest: document",
                        "Sec-Fetch-Mode: navigate", "Sec-Fetch-Site: none", "Sec-Fetch-User: ?1"}) {
    headers.reset(curl_slist_append(headers.release(), h));
  }
  Page page;
  page.max = options.max_page_bytes;
  char error[CURL_ERROR_SIZE] = {};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, options.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options.fetch_timeout)));
  curl_easy_setopt(c, CURLOPT_USERAGENT, kUserAgent);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // whatever libcurl can decode
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_page_bytes));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &page);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  const CURLcode result = curl_easy_perform(c);
  if (page.too_big || result == CURLE_FILESIZE_EXCEEDED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the page is bigger than ", options.max_page_bytes, " bytes"));
  }
  if (result != CURLE_OK) {
    return absl::UnavailableError(error[0] ? error : curl_easy_strerror(result));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) return absl::UnavailableError(absl::StrCat("HTTP ", status));
  return std::move(page.body);
}

std::optional<std::pair<wa::WaVersion, absl::Time>> LoadStored(PgPool& pool, spdlog::logger& log) {
  std::optional<std::pair<wa::WaVersion, absl::Time>> stored;
  auto st = pool.Run("read the stored WhatsApp Web version", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec(
        "SELECT version, (extract(epoch from read_at) * 1000000)::bigint FROM wa_client_version");
    if (r.empty()) return;
    auto v = wa::WaVersion::Parse(r[0][0].as<std::string>());
    if (v.ok()) stored.emplace(*v, absl::FromUnixMicros(r[0][1].as<int64_t>()));
  });
  if (!st.ok()) log.warn("reading the stored WhatsApp Web version: {}", st.message());
  return stored;
}

}  // namespace

struct VersionKeeper::Metrics {
  explicit Metrics(prometheus::Registry& registry)
      : info(prometheus::BuildGauge()
                 .Name("wasentinel_wa_version_info")
                 .Help("The WhatsApp Web version announced at login (1), with where it came from: "
                       "fixed (--wa_version), live (read from the page), stored, default")
                 .Register(registry)),
        reads(prometheus::BuildCounter()
                  .Name("wasentinel_wa_version_reads_total")
                  .Help("Reads of the WhatsApp Web version page, by result")
                  .Register(registry)) {}
  void Show(const wa::WaVersion& v, Source source) {
    if (shown) info.Remove(shown);
    shown = &info.Add({{"version", v.ToString()}, {"source", std::string(SourceName(source))}});
    shown->Set(1);
  }
  prometheus::Family<prometheus::Gauge>& info;
  prometheus::Family<prometheus::Counter>& reads;
  prometheus::Gauge* shown = nullptr;
};

std::string_view VersionKeeper::SourceName(Source source) {
  switch (source) {
    case Source::kFixed:
      return "fixed";
    case Source::kLive:
      return "live";
    case Source::kStored:
      return "stored";
    case Source::kDefault:
      return "default";
  }
  return "default";
}

absl::StatusOr<std::unique_ptr<VersionKeeper>> VersionKeeper::Create(
    VersionOptions options, PgPool* pool, prometheus::Registry* registry,
    std::shared_ptr<spdlog::logger> log) {
  std::optional<wa::WaVersion> fixed;
  if (options.version != "auto") {
    auto v = wa::WaVersion::Parse(options.version);
    if (!v.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--wa_version is \"auto\" or a version: ", v.status().message()));
    }
    fixed = *v;
  }
  std::unique_ptr<VersionKeeper> keeper(new VersionKeeper(std::move(options), pool, log));
  if (registry) keeper->metrics_ = std::make_unique<Metrics>(*registry);
  absl::MutexLock lock(&keeper->mu_);
  keeper->SetCurrent(fixed.value_or(wa::kDefaultWaVersion),
                     fixed ? Source::kFixed : Source::kDefault);
  return keeper;
}

VersionKeeper::VersionKeeper(VersionOptions options, PgPool* pool,
                             std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)), pool_(pool), log_(std::move(log)) {}

VersionKeeper::~VersionKeeper() { Stop(); }

void VersionKeeper::SetCurrent(const wa::WaVersion& version, Source source) {
  const bool changed = !(version == current_) || source != source_;
  current_ = version;
  source_ = source;
  if (changed && metrics_) metrics_->Show(version, source);
}

void VersionKeeper::Start() {
  if (source() == Source::kFixed) {
    log_->info("announcing WhatsApp Web {} (fixed by --wa_version)", Current().ToString());
    return;
  }
  {
    // A 405 during the first read below queues for the keeper's thread, which reads again.
    absl::MutexLock lock(&mu_);
    started_ = true;
  }
  if (pool_) {
    if (auto stored = LoadStored(*pool_, *log_);
        stored && stored->first.tertiary > wa::kDefaultWaVersion.tertiary) {
      absl::MutexLock lock(&mu_);
      SetCurrent(stored->first, Source::kStored);
    }
  }
  if (auto st = ReadLive(); !st.ok()) {
    log_->warn(
        "could not read the WhatsApp Web version from {} ({}); announcing {} ({}) until the next "
        "read in {}",
        RedactUrlCredentials(options_.url), st.message(), Current().ToString(),
        source() == Source::kStored ? "the last one read" : "the compiled default",
        absl::FormatDuration(options_.refresh_interval));
  }
  thread_ = std::thread([this] { Loop(); });
}

void VersionKeeper::Stop() {
  std::vector<Waiter> abandoned;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    abandoned = std::move(waiting_);
    waiting_.clear();
  }
  if (thread_.joinable()) thread_.join();
  for (auto& w : abandoned) w.done(std::nullopt);
}

wa::WaVersion VersionKeeper::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

VersionKeeper::Source VersionKeeper::source() const {
  absl::MutexLock lock(&mu_);
  return source_;
}

void VersionKeeper::Outdated(const wa::WaVersion& used,
                             std::function<void(std::optional<wa::WaVersion>)> done) {
  std::optional<wa::WaVersion> answer;
  {
    absl::MutexLock lock(&mu_);
    if (!(current_ == used)) {
      answer = current_;  // a newer read already happened: retry with it
    } else if (source_ == Source::kFixed || stop_ || !started_) {
      // Pinned by the operator, or not running: nothing else to offer.
    } else if (reading_) {
      joined_.push_back({used, std::move(done)});
      return;
    } else if (last_read_ && absl::Now() - *last_read_ < options_.refetch_after) {
      // Read a moment ago and it named this very version.
    } else {
      waiting_.push_back({used, std::move(done)});
      return;
    }
  }
  done(answer);
}

absl::Status VersionKeeper::ReadLive() {
  auto page = Fetch(options_);
  absl::StatusOr<wa::WaVersion> version =
      page.ok() ? wa::VersionFromPage(*page) : absl::StatusOr<wa::WaVersion>(page.status());
  const char* result = version.ok()                                  ? "ok"
                       : absl::IsResourceExhausted(version.status()) ? "too_large"
                       : page.ok()                                   ? "no_version"
                                                                     : "unreachable";
  if (metrics_) metrics_->reads.Add({{"result", result}}).Increment();
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    last_read_ = now;
    if (!version.ok()) return version.status();
    if (!(current_ == *version)) {
      log_->info("WhatsApp Web is at {} (read from {}); announcing it from the next login",
                 version->ToString(), RedactUrlCredentials(options_.url));
    }
    SetCurrent(*version, Source::kLive);
  }
  if (pool_) {
    auto st = pool_->Run("store the WhatsApp Web version", [&](pqxx::connection& c) {
      pqxx::nontransaction n(c);
      n.exec_params(
          "INSERT INTO wa_client_version (version, source_url) VALUES ($1, $2)"
          " ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version,"
          " source_url = EXCLUDED.source_url, read_at = now()",
          version->ToString(), RedactUrlCredentials(options_.url));
    });
    if (!st.ok()) log_->warn("storing the WhatsApp Web version: {}", st.message());
  }
  return absl::OkStatus();
}

void VersionKeeper::Loop() {
  absl::Time next = absl::Now() + options_.refresh_interval;
  for (;;) {
    std::vector<Waiter> served;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !waiting_.empty(); };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next);
      if (stop_) break;
      served = std::move(waiting_);
      waiting_.clear();
      reading_ = true;
    }
    if (auto st = ReadLive(); !st.ok()) {
      log_->warn("could not read the WhatsApp Web version from {}: {}; still announcing {}",
                 RedactUrlCredentials(options_.url), st.message(), Current().ToString());
    }
    next = absl::Now() + options_.refresh_interval;
    wa::WaVersion now_current;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      for (auto& w : joined_) served.push_back(std::move(w));
      joined_.clear();
      now_current = current_;
    }
    for (auto& w : served) {
      w.done(now_current == w.used ? std::nullopt : std::optional<wa::WaVersion>(now_current));
    }
  }
  std::vector<Waiter> abandoned;
  {
    absl::MutexLock lock(&mu_);
    abandoned = std::move(joined_);
    joined_.clear();
  }
  for (auto& w : abandoned) w.done(std::nullopt);
}

}  // namespace wasentinel::session
