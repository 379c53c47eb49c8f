// Which WhatsApp Web version session-service announces at login (wa/version.h), and keeping it
// current: `--wa_version auto` reads the live one from the WhatsApp Web page at start-up and
// every `refresh_interval`, keeps the last good one in PostgreSQL (`wa_client_version`), and
// reads again when a login meets <failure reason="405">. README "Configuration" ›
// "session-service" and "Session states" › "What WhatsApp says".
//
// Threading: Current() and Outdated() from any thread; fetches run on the keeper's own thread,
// one at a time, and Outdated()'s callbacks are called there (or at once on the caller's).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "version.h"

namespace prometheus {
class Registry;
}
namespace spdlog {
class logger;
}

namespace wasentinel {
class PgPool;
}

namespace wasentinel::session {

/// Where the announced version comes from, as SessionManager sees it.
class ClientVersions {
 public:
  virtual ~ClientVersions() = default;
  /// The version to announce at the next login.
  virtual wa::WaVersion Current() const = 0;
  /// A login announcing `used` met <failure reason="405">. `done` gets a different version to
  /// log in with once more, or nullopt when there is none to be had (a fixed version, the page
  /// unreadable or naming `used` again): the session is then CLIENT_OUTDATED.
  virtual void Outdated(const wa::WaVersion& used,
                        std::function<void(std::optional<wa::WaVersion>)> done) = 0;
};

struct VersionOptions {
  /// "auto", or a fixed version ("2.3000.N") that is announced as is and never refreshed.
  std::string version = "auto";
  /// The page naming the live version: whatsmeow reads WhatsApp Web's own page.
  std::string url = "https://web.whatsapp.com/";
  absl::Duration refresh_interval = absl::Hours(24);
  /// Bounds one read of the page (connect, TLS, transfer).
  absl::Duration fetch_timeout = absl::Seconds(10);
  /// A bigger page is refused unread (the real page is a few hundred KB).
  size_t max_page_bytes = size_t{8} << 20;
  /// After a 405, the page is read again only if the last read is older than this: a
  /// thousand sessions meeting 405 at once cause one read.
  absl::Duration refetch_after = absl::Minutes(1);
};

class VersionKeeper final : public ClientVersions {
 public:
  enum class Source { kFixed, kLive, kStored, kDefault };
  static std::string_view SourceName(Source source);

  /// INVALID_ARGUMENT when `options.version` is neither "auto" nor a version. `pool` (may be
  /// null: nothing stored) keeps the last good live version; `registry` (may be null) gets
  /// wasentinel_wa_version_info{version,source} and wasentinel_wa_version_reads_total{result}.
  static absl::StatusOr<std::unique_ptr<VersionKeeper>> Create(VersionOptions options, PgPool* pool,
                                                               prometheus::Registry* registry,
                                                               std::shared_ptr<spdlog::logger> log);
  ~VersionKeeper() override;

  /// `auto`: takes the stored version (when newer than the compiled default), reads the live one
  /// (waits up to fetch_timeout; on failure a warning names what was used instead), then
  /// refreshes every refresh_interval on the keeper's thread. A fixed version: nothing to do.
  void Start();
  /// Ends the keeper's thread; callbacks still waiting get nullopt. Idempotent.
  void Stop();

  wa::WaVersion Current() const override;
  Source source() const;
  void Outdated(const wa::WaVersion& used,
                std::function<void(std::optional<wa::WaVersion>)> done) override;

  /// Reads the page now (on the caller's thread) and, when it names a version, makes it
  /// current and stores it. The reason when it could not: UNAVAILABLE (unreachable, HTTP
  /// error), RESOURCE_EXHAUSTED (too big), INVALID_ARGUMENT (no version on it).
  absl::Status ReadLive();

 private:
  struct Metrics;
  VersionKeeper(VersionOptions options, PgPool* pool, std::shared_ptr<spdlog::logger> log);
  void Loop();
  void SetCurrent(const wa::WaVersion& version, Source source) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  VersionOptions options_;
  PgPool* pool_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Metrics> metrics_;

  mutable absl::Mutex mu_;
  wa::WaVersion current_ ABSL_GUARDED_BY(mu_) = wa::kDefaultWaVersion;
  Source source_ ABSL_GUARDED_BY(mu_) = Source::kDefault;
  std::optional<absl::Time> last_read_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // Start() ran: Outdated() may queue for a read
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  struct Waiter {
    wa::WaVersion used;
    std::function<void(std::optional<wa::WaVersion>)> done;
  };
  std::vector<Waiter> waiting_ ABSL_GUARDED_BY(mu_);  // for the next read
  std::vector<Waiter> joined_ ABSL_GUARDED_BY(mu_);   // for the read under way
  std::thread thread_;
};

}  // namespace wasentinel::session
