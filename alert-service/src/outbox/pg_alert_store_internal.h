// What the parts of PgAlertStore (pg_alert_store.h) share, defined in pg_alert_store.cc.
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "outbox/delivery_store.h"
#include "wasentinel/alert/v1/alert.pb.h"

namespace wasentinel::alert::internal {

// Timestamps travel as Unix microseconds both ways (PgTime, PgEpochMicros); enums as their
// proto names.

const std::string& AlertColumns();
/// Both tables of the outbox as one, for reading: alert_deliveries and
/// alert_message_deliveries (message events), ids from one sequence.
const std::string& DeliveryTables();
/// The outbox's tables, for writes that name a delivery by id only.
inline constexpr const char* kDeliveryTables[] = {"alert_deliveries", "alert_message_deliveries"};
const std::string& DeliveryColumns();
const std::string& EndpointColumns();

google::protobuf::Timestamp TimeOf(const pqxx::field& f);

template <class Enum>
Enum EnumOf(const pqxx::field& f, bool (*parse)(const std::string&, Enum*)) {
  Enum e{};
  parse(f.as<std::string>(), &e);
  return e;
}

v1::Alert ToAlert(const pqxx::row& r);
v1::Delivery ToDelivery(const pqxx::row& r);
EndpointRecord ToEndpoint(const pqxx::row& r);

absl::Status CheckUuid(const std::string& id, std::string_view what);

}  // namespace wasentinel::alert::internal
