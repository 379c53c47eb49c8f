// Leader election on a real PostgreSQL: one leader at a time; a standby takes over when the
// leader leaves, and when the leader's connection dies (the lock goes with it).
#include "health/leader.h"

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "monitor_db.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/testing/status_matchers.h"
#include "wasentinel/testing/test_database.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::monitor {
namespace {

TEST(LeaderElection, OneAtATimeAndTakeover) {
  MonitorDb m;
  const auto& db = m.db;

  LeaderElection a(db.url(), "monitor-a"), b(db.url(), "monitor-b");
  EXPECT_TRUE(a.TryAcquire().value());
  EXPECT_FALSE(b.TryAcquire().value());
  EXPECT_TRUE(a.TryAcquire().value()) << "a held lock stays held";
  EXPECT_EQ(b.Leader().value(), "monitor-a");

  a.Release();  // a clean shutdown
  EXPECT_TRUE(b.TryAcquire().value());
  EXPECT_FALSE(a.TryAcquire().value());
  EXPECT_EQ(a.Leader().value(), "monitor-b");

  // The leader's connection dies (a crash, a network cut): its lock ends with it.
  {
    pqxx::connection admin(db.url());
    pqxx::nontransaction n(admin);
    n.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())");
  }
  EXPECT_THAT(b.TryAcquire(), ::testing::Not(IsOk())) << "b notices it lost the lock";
  EXPECT_FALSE(b.leader());
  EXPECT_TRUE(a.TryAcquire().value());
  EXPECT_EQ(b.Leader().value(), "monitor-a");
}

}  // namespace
}  // namespace wasentinel::monitor
