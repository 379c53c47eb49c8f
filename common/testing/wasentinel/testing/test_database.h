// A database of its own for each test, on the PostgreSQL server that the ctest fixture `pg`
// started (tests/support/pg-server); its URL comes from WAS_TEST_DATABASE_URL. A missing
// server fails the test: it is never skipped.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <string_view>

#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"

namespace wasentinel::testing {

class TestDatabase {
 public:
  TestDatabase() {
    const char* admin = std::getenv("WAS_TEST_DATABASE_URL");
    if (!admin || !*admin) {
      ADD_FAILURE() << "WAS_TEST_DATABASE_URL is not set: run through ctest (fixture pg)";
      return;
    }
    admin_url_ = admin;
    name_ = "t_" + std::to_string(std::random_device{}()) + std::to_string(std::random_device{}());
    pqxx::connection c(admin_url_);
    pqxx::nontransaction n(c);
    n.exec("CREATE DATABASE " + name_);
    // Replace the database name (the URL's path) with ours.
    const size_t slash = admin_url_.rfind('/');
    url_ = admin_url_.substr(0, slash + 1) + name_;
  }
  ~TestDatabase() {
    if (name_.empty()) return;
    try {
      pqxx::connection c(admin_url_);
      pqxx::nontransaction n(c);
      n.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "dropping " << name_ << ": " << e.what();
    }
  }
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& url() const { return url_; }

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

/// A TestDatabase with `service`'s migrations applied (Store::Migrations()), a pool of
/// `pool_size` connections and a `Store` over it: what each service's store tests start from.
template <class Store>
struct MigratedDatabase {
  explicit MigratedDatabase(std::string_view service, int pool_size = 2)
      : pool(PgPool::Create(db.url(), pool_size).value()), store(*pool) {
    auto log = MakeLogger("test", "warn");
    EXPECT_TRUE(ApplyMigrations(*pool, service, Store::Migrations(), *log).ok());
  }
  TestDatabase db;
  std::unique_ptr<PgPool> pool;
  Store store;
};

}  // namespace wasentinel::testing
