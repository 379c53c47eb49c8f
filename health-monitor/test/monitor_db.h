// A database of its own (fixture pg) with the health-monitor's migrations applied, and the
// store over it.
#pragma once

#include <gtest/gtest.h>

#include "health/pg_health_store.h"
#include "wasentinel/testing/test_database.h"

namespace wasentinel::monitor {

struct MonitorDb : wasentinel::testing::MigratedDatabase<PgHealthStore> {
  MonitorDb() : MigratedDatabase("health-monitor") {}
};

}  // namespace wasentinel::monitor
