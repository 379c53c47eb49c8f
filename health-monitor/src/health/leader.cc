#include "leader.h"

#include <pqxx/pqxx>

#include "wasentinel/common/pg.h"

namespace wasentinel::monitor {
namespace {

// The advisory lock key: 'wasm' 'lead' as two 32-bit halves, fixed for all monitor replicas.
constexpr int64_t kLockKey = 0x7761736d6c656164;

}  // namespace

struct LeaderElection::Connection {
  explicit Connection(const std::string& url) : c(url) {}
  pqxx::connection c;
};

LeaderElection::LeaderElection(std::string url, std::string replica)
    : url_(std::move(url)), replica_(std::move(replica)) {}

LeaderElection::~LeaderElection() { Release(); }

absl::StatusOr<bool> LeaderElection::TryAcquire() {
  try {
    if (!conn_) conn_ = std::make_unique<Connection>(url_);
    pqxx::nontransaction n(conn_->c);
    if (!leader_) {
      leader_ = n.exec_params("SELECT pg_try_advisory_lock($1)", kLockKey)[0][0].as<bool>();
    } else {
      n.exec("SELECT 1");  // the lock lives as long as this connection does
    }
    if (leader_) {
      n.exec_params(
          "INSERT INTO monitor_leader (id, replica, since, heartbeat_at) VALUES (1, $1, now(),"
          " now()) ON CONFLICT (id) DO UPDATE SET since = CASE WHEN monitor_leader.replica ="
          " EXCLUDED.replica THEN monitor_leader.since ELSE now() END, replica ="
          " EXCLUDED.replica, heartbeat_at = now()",
          replica_);
    }
    return leader_;
  } catch (const std::exception& e) {
    conn_.reset();  // a broken connection took the lock with it
    leader_ = false;
    return PgError(e, "leader election");
  }
}

void LeaderElection::Release() {
  if (!conn_) return;
  try {
    if (leader_) {
      pqxx::nontransaction n(conn_->c);
      n.exec_params("SELECT pg_advisory_unlock($1)", kLockKey);
    }
  } catch (const std::exception&) {
    // The lock ends with the connection anyway.
  }
  conn_.reset();
  leader_ = false;
}

absl::StatusOr<std::string> LeaderElection::Leader() {
  try {
    pqxx::connection c(url_);
    pqxx::nontransaction n(c);
    auto r = n.exec("SELECT replica FROM monitor_leader WHERE id = 1");
    return r.empty() ? std::string() : r[0][0].as<std::string>();
  } catch (const std::exception& e) {
    return PgError(e, "read the leader");
  }
}

}  // namespace wasentinel::monitor
