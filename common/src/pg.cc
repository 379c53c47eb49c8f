#include "wasentinel/common/pg.h"

#include <poll.h>

#include <cerrno>
#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"

namespace wasentinel {

absl::Status PgError(const std::exception& e, std::string_view what) {
  const std::string msg = absl::StrCat(Sv(what), ": ", e.what());
  if (dynamic_cast<const pqxx::broken_connection*>(&e) ||
      dynamic_cast<const pqxx::in_doubt_error*>(&e)) {
    return absl::UnavailableError(msg);
  }
  if (dynamic_cast<const pqxx::unique_violation*>(&e)) return absl::AlreadyExistsError(msg);
  if (dynamic_cast<const pqxx::foreign_key_violation*>(&e) ||
      dynamic_cast<const pqxx::check_violation*>(&e) ||
      dynamic_cast<const pqxx::not_null_violation*>(&e)) {
    return absl::FailedPreconditionError(msg);
  }
  if (dynamic_cast<const pqxx::data_exception*>(&e)) return absl::InvalidArgumentError(msg);
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    // Class 08: connection exceptions; 57P: operator intervention (shutdown, restart).
    const std::string& state = sql->sqlstate();
    if (state.starts_with("08") || state.starts_with("57P")) return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

std::string PgTime(int n) {
  return absl::StrCat("(timestamptz 'epoch' + $", n, "::bigint * interval '1 microsecond')");
}

std::string PgEpochMicros(std::string_view column) {
  return absl::StrCat("(extract(epoch from ", Sv(column), ") * 1000000)::bigint");
}

std::string PgHex(std::string_view bytes) {
  return HexEncode(ByteView(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

pqxx::row PgOne(const pqxx::result& r) {
  if (r.size() != 1) throw pqxx::unexpected_rows("expected exactly one row");
  return r[0];
}

namespace {

std::unique_ptr<pqxx::connection> Open(const std::string& url) {
  try {
    return std::make_unique<pqxx::connection>(url);
  } catch (const pqxx::broken_connection& e) {
    throw pqxx::broken_connection(absl::StrCat("PostgreSQL unreachable: ", e.what()));
  }
}

}  // namespace

std::string PgConnInfo(std::string url) {
  // libpq waits for a TCP connect, and for an answer on a connection whose peer vanished
  // without a FIN, as long as TCP does (minutes): a database behind a dead route must fail a
  // call within seconds. A setting the URL already has wins.
  static constexpr std::pair<const char*, const char*> kDefaults[] = {{"connect_timeout", "5"},
                                                                      {"tcp_user_timeout", "10000"},
                                                                      {"keepalives_idle", "10"},
                                                                      {"keepalives_interval", "5"},
                                                                      {"keepalives_count", "3"}};
  const bool uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
  for (const auto& [key, value] : kDefaults) {
    if (absl::StrContains(url, absl::StrCat(key, "="))) continue;
    if (uri) {
      absl::StrAppend(&url, absl::StrContains(url, "?") ? "&" : "?", key, "=", value);
    } else {
      absl::StrAppend(&url, " ", key, "=", value);
    }
  }
  return url;
}

bool PgPool::Usable(pqxx::connection& conn) {
  if (!conn.is_open()) return false;
  // An idle pooled connection has nothing to read: we never LISTEN on one and every result was
  // consumed. Readable means the server spoke first, which it does only to end the session
  // (FATAL 57P01 on a restart or pg_terminate_backend, then EOF); a hang-up or an error on the
  // socket means the same without the goodbye.
  pollfd pfd{conn.sock(), POLLIN | POLLRDHUP, 0};
  if (pfd.fd < 0) return false;
  int ready;
  do {
    ready = ::poll(&pfd, 1, 0);
  } while (ready < 0 && errno == EINTR);
  return ready == 0;
}

absl::StatusOr<std::unique_ptr<PgPool>> PgPool::Create(std::string url, int size) {
  std::unique_ptr<PgPool> pool(new PgPool(PgConnInfo(std::move(url)), std::max(1, size)));
  try {
    pool->slots_[0] = std::make_unique<pqxx::connection>(pool->url_);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot connect to PostgreSQL: ", e.what()));
  }
  return pool;
}

size_t PgPool::Checkout(std::string_view what, absl::Duration wait, absl::Status& status) {
  std::unique_lock lock(mu_);
  size_t slot = 0;
  auto free_slot = [&] {
    for (size_t i = 0; i < busy_.size(); ++i) {
      if (!busy_[i]) {
        slot = i;
        return true;
      }
    }
    return false;
  };
  if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(wait), free_slot)) {
    status = absl::DeadlineExceededError(absl::StrCat(
        Sv(what), ": no database connection free within ", absl::FormatDuration(wait)));
    return 0;
  }
  busy_[slot] = true;
  return slot;
}

void PgPool::Return(size_t slot) {
  {
    std::lock_guard lock(mu_);
    busy_[slot] = false;
  }
  cv_.notify_one();
}

pqxx::connection& PgPool::Connection(size_t slot) {
  auto& conn = slots_[slot];
  if (conn && !Usable(*conn)) {
    conn.reset();
    replaced_.fetch_add(1, std::memory_order_relaxed);
  }
  if (!conn) conn = Open(url_);
  return *conn;
}

absl::Status PgPool::Run(std::string_view what, const std::function<void(pqxx::connection&)>& fn,
                         absl::Duration wait) {
  absl::Status status;
  const size_t slot = Checkout(what, wait, status);
  if (!status.ok()) return status;
  try {
    fn(Connection(slot));
  } catch (const std::exception& e) {
    status = PgError(e, what);
    if (status.code() == absl::StatusCode::kUnavailable) slots_[slot].reset();
  } catch (...) {
    status = absl::InternalError(absl::StrCat(Sv(what), ": unknown exception"));
    slots_[slot].reset();
  }
  Return(slot);
  return status;
}

absl::Status PgPool::Transact(std::string_view what, const std::function<void(pqxx::work&)>& fn,
                              absl::Duration wait) {
  absl::Status status;
  const size_t slot = Checkout(what, wait, status);
  if (!status.ok()) return status;
  // A pooled connection that breaks at BEGIN, before `fn` ran, is replaced and the transaction
  // tried once more. Once `fn` runs, a break is the caller's (UNAVAILABLE; in_doubt_error when
  // the COMMIT itself went unanswered). A connection that cannot be opened is not retried: the
  // connect timeout was already spent.
  for (int attempt = 0;; ++attempt) {
    bool began = false;
    try {
      pqxx::connection* conn = nullptr;
      try {
        conn = &Connection(slot);
      } catch (const std::exception& e) {
        status = PgError(e, what);
        break;
      }
      pqxx::work w(*conn);
      began = true;
      fn(w);
      w.commit();
      break;
    } catch (const std::exception& e) {
      status = PgError(e, what);
      if (status.code() != absl::StatusCode::kUnavailable) break;
      slots_[slot].reset();
      if (began || attempt > 0 || dynamic_cast<const pqxx::in_doubt_error*>(&e)) break;
      status = absl::OkStatus();
    } catch (...) {
      status = absl::InternalError(absl::StrCat(Sv(what), ": unknown exception"));
      slots_[slot].reset();
      break;
    }
  }
  Return(slot);
  return status;
}

absl::StatusOr<absl::Duration> PgPool::Ping() {
  const absl::Time start = absl::Now();
  absl::Status st = Run(
      "ping",
      [](pqxx::connection& c) {
        pqxx::nontransaction n(c);
        n.exec("SELECT 1");
      },
      absl::Seconds(2));
  if (!st.ok()) return st;
  return absl::Now() - start;
}

absl::Status PgProbe::Check() {
  try {
    if (conn_ && !PgPool::Usable(*conn_)) conn_.reset();
    if (!conn_) conn_ = Open(url_);
    pqxx::nontransaction n(*conn_);
    n.exec("SELECT 1");
    return absl::OkStatus();
  } catch (const std::exception& e) {
    conn_.reset();
    return PgError(e, "database probe");
  }
}

absl::Status ApplyMigrations(PgPool& pool, std::string_view service,
                             const std::vector<Migration>& migrations, spdlog::logger& log) {
  // libpqxx allows one transaction object at a time per connection, so each step has its own;
  // the advisory lock is held by the session, across them. One lock for every service:
  // migrations are rare and short.
  auto exec = [](pqxx::connection& c, const std::string& sql) {
    pqxx::nontransaction n(c);
    n.exec(sql);
  };
  return pool.Run("apply migrations", [&](pqxx::connection& c) {
    exec(c, "SELECT pg_advisory_lock(727001)");
    try {
      exec(c,
           "CREATE TABLE IF NOT EXISTS schema_migrations ("
           " service text NOT NULL, version int NOT NULL, description text NOT NULL,"
           " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version))");
      for (const Migration& m : migrations) {
        pqxx::work w(c);
        auto r =
            w.exec_params("SELECT 1 FROM schema_migrations WHERE service = $1 AND version = $2",
                          std::string(service), m.version);
        if (!r.empty()) continue;
        w.exec(m.sql);
        w.exec_params(
            "INSERT INTO schema_migrations (service, version, description) VALUES ($1, $2, $3)",
            std::string(service), m.version, m.description);
        w.commit();
        log.info("applied migration {} {}: {}", Sv(service), m.version, m.description);
      }
    } catch (...) {
      try {
        exec(c, "SELECT pg_advisory_unlock(727001)");
      } catch (...) {
      }
      throw;
    }
    exec(c, "SELECT pg_advisory_unlock(727001)");
  });
}

}  // namespace wasentinel
