// Only one monitor acts at a time (README "Architecture" › "More than one replica"): the leader
// holds a PostgreSQL session-level advisory lock on a connection of its own. The lock goes with the
// connection, so a leader that dies or loses the database stops being the leader, and a
// standby polling TryAcquire() takes over within one poll. The leader also writes its replica
// name to monitor_leader, so every replica can say who leads.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace wasentinel::monitor {

class LeaderElection {
 public:
  /// `url`: the database; `replica`: this monitor's name.
  LeaderElection(std::string url, std::string replica);
  ~LeaderElection();

  /// Leader or not, now: takes the lock when free, and checks a held lock is still held (its
  /// connection answers). A database that does not answer is "not leader" with its error.
  absl::StatusOr<bool> TryAcquire();
  /// Gives the lock up (shutdown), so a standby takes over at once.
  void Release();
  bool leader() const { return leader_; }
  /// The replica that leads, as the leader last wrote it (empty: none known).
  absl::StatusOr<std::string> Leader();

 private:
  const std::string url_;
  const std::string replica_;
  struct Connection;  // the lock's own pqxx connection
  std::unique_ptr<Connection> conn_;
  bool leader_ = false;
};

}  // namespace wasentinel::monitor
