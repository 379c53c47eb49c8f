// absl::Time / absl::Duration ⇄ google.protobuf.Timestamp / Duration, at microsecond
// precision (what PostgreSQL keeps), through protobuf's TimeUtil. An unset Timestamp (all
// zero) is the Unix epoch.
#pragma once

#include <google/protobuf/util/time_util.h>

#include "absl/time/time.h"

namespace wasentinel {

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

inline absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(google::protobuf::util::TimeUtil::TimestampToMicroseconds(t));
}

inline google::protobuf::Duration ToProto(absl::Duration d) {
  return google::protobuf::util::TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(d));
}

inline absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Microseconds(google::protobuf::util::TimeUtil::DurationToMicroseconds(d));
}

}  // namespace wasentinel
