// PostgreSQL access through libpqxx: a small connection pool, libpqxx errors translated to
// absl::Status, and schema migrations applied under an advisory lock.
//
// Include only from store implementations (.cc): this header brings in libpqxx.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace spdlog {
class logger;
}

namespace wasentinel {

/// Maps a libpqxx / std exception to a status: broken connections → UNAVAILABLE, unique
/// violations → ALREADY_EXISTS, foreign keys / checks → FAILED_PRECONDITION, bad input →
/// INVALID_ARGUMENT, others → INTERNAL. The message names `what` (the operation).
absl::Status PgError(const std::exception& e, std::string_view what);

// SQL fragments for timestamps, which travel as Unix microseconds both ways (bigint parameters
// and columns), and for bytea parameters (libpqxx 6 has no binary parameter: hex text).

/// Parameter $n (Unix microseconds, bigint) as a timestamptz expression.
std::string PgTime(int n);
/// Column `column` (timestamptz) as Unix microseconds (bigint; NULL stays NULL).
std::string PgEpochMicros(std::string_view column);
/// `bytes` as the hex text `decode($n, 'hex')` takes.
std::string PgHex(std::string_view bytes);
/// The single row a statement must return; throws pqxx::unexpected_rows otherwise (libpqxx 6
/// has no exec_params1).
pqxx::row PgOne(const pqxx::result& r);

/// `url` (a libpq URI or key=value string) with the timeouts every connection here needs where
/// it does not set them: connect_timeout 5 s, tcp_user_timeout 10 s, TCP keepalives after 10 s
/// idle (3 probes 5 s apart), so a database behind a dead route fails calls within seconds.
std::string PgConnInfo(std::string url);

class PgPool {
 public:
  /// Opens `size` connections to PgConnInfo(`url`) lazily (the first on Create, to fail fast on a
  /// bad URL or an unreachable server: UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<PgPool>> Create(std::string url, int size);

  /// Runs `fn(connection)` on a pooled connection; exceptions become statuses (PgError).
  /// Every checkout validates the connection without a round trip (an idle connection the
  /// server closed or spoke on, as after a restart or pg_terminate_backend, is replaced), so a
  /// connection that died while pooled never fails a call. While the server is unreachable:
  /// UNAVAILABLE "…: PostgreSQL unreachable: …" within the connect timeout (PgConnInfo).
  /// DEADLINE_EXCEEDED when no connection frees up within `wait`.
  absl::Status Run(std::string_view what, const std::function<void(pqxx::connection&)>& fn,
                   absl::Duration wait = absl::Seconds(10));

  /// Runs `fn` in one transaction (committed when fn returns normally). A connection that
  /// breaks at BEGIN, before `fn` ran, is replaced and the transaction retried once.
  absl::Status Transact(std::string_view what, const std::function<void(pqxx::work&)>& fn,
                        absl::Duration wait = absl::Seconds(10));

  /// SELECT 1 round trip; the latency or UNAVAILABLE.
  absl::StatusOr<absl::Duration> Ping();

  const std::string& url() const { return url_; }
  /// Pooled connections found dead at checkout and replaced, since start.
  int64_t replaced() const { return replaced_.load(std::memory_order_relaxed); }

  /// False when `conn` cannot serve a statement: closed, or its idle socket is readable or hung
  /// up (the server ended the session). No round trip.
  static bool Usable(pqxx::connection& conn);

 private:
  PgPool(std::string url, int size) : url_(std::move(url)), slots_(size) {}
  // The index of a free slot, marked busy; `status` set when none frees up within `wait`.
  size_t Checkout(std::string_view what, absl::Duration wait, absl::Status& status);
  void Return(size_t slot);
  // The slot's connection, opened or replaced when missing or unusable; throws
  // pqxx::broken_connection when the server cannot be reached.
  pqxx::connection& Connection(size_t slot);

  std::string url_;
  std::atomic<int64_t> replaced_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> slots_;  // nullptr: not open yet, or broken
  std::vector<bool> busy_ = std::vector<bool>(slots_.size(), false);
};

/// One connection of its own that answers "can the database be reached now?" — readiness and
/// the `wasentinel_database_up` gauge ask it, so a busy pool never reads as an outage.
/// Not thread-safe: one caller (the runtime's database watch).
class PgProbe {
 public:
  explicit PgProbe(std::string url) : url_(PgConnInfo(std::move(url))) {}
  /// SELECT 1 on the probe's connection (reopened when unusable); OK, or UNAVAILABLE with
  /// libpq's reason.
  absl::Status Check();

 private:
  std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
};

struct Migration {
  int version;
  std::string description;
  std::string sql;
};

/// Applies the migrations of `service` not yet recorded in `schema_migrations`, each in its own
/// transaction, in version order, while holding a PostgreSQL advisory lock so that replicas
/// starting together apply each exactly once.
absl::Status ApplyMigrations(PgPool& pool, std::string_view service,
                             const std::vector<Migration>& migrations, spdlog::logger& log);

}  // namespace wasentinel
