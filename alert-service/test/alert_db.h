// A database of its own (fixture pg) with alert-service's migrations applied, and the store.
#pragma once

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "outbox/pg_alert_store.h"
#include "wasentinel/testing/test_database.h"

namespace wasentinel::alert {

struct AlertDb : wasentinel::testing::MigratedDatabase<PgAlertStore> {
  AlertDb() : MigratedDatabase("alert-service", 4) {}
  // Rows the API for endpoints and silences will write; here straight into the tables.
  std::string AddEndpoint(const std::string& url, const std::string& event_types = "{}") {
    pqxx::connection c(db.url());
    pqxx::nontransaction n(c);
    return n
        .exec_params(
            "INSERT INTO alert_endpoints (url, event_types, secret_key_id, secret, created_at)"
            " VALUES ($1, $2::text[], 'k', '\\x00', now()) RETURNING id::text",
            url, event_types)[0][0]
        .as<std::string>();
  }
  void AddSilence(const std::string& tenant, absl::Time until) {
    pqxx::connection c(db.url());
    pqxx::nontransaction n(c);
    n.exec_params(
        "INSERT INTO alert_silences (tenant_id, until, created_at) VALUES ($1, timestamptz "
        "'epoch' + $2::bigint * interval '1 microsecond', now())",
        tenant, absl::ToUnixMicros(until));
  }
};

}  // namespace wasentinel::alert
