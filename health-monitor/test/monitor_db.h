// A database of its own (fixture pg) with the health-monitor's migrations applied, and the
// store over it.
#pragma once

#include <gtest/gtest.h>

#include "health/pg_health_store.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/testing/test_database.h"

namespace wasentinel::monitor {

struct MonitorDb {
  wasentinel::testing::TestDatabase db;
  std::unique_ptr<PgPool> pool = PgPool::Create(db.url(), 2).value();
  PgHealthStore store{*pool};
  MonitorDb() {
    auto log = MakeLogger("test", "warn");
    EXPECT_TRUE(ApplyMigrations(*pool, "health-monitor", PgHealthStore::Migrations(), *log).ok());
  }
};

}  // namespace wasentinel::monitor
