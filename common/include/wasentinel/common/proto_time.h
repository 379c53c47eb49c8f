// absl::Time / absl::Duration ⇄ google.protobuf.Timestamp / Duration, at microsecond
// precision (what PostgreSQL keeps). An unset Timestamp (all zero) is the Unix epoch.
#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace wasentinel {

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  const int64_t us = absl::ToUnixMicros(t);
  int64_t seconds = us / 1000000;
  int64_t rest = us % 1000000;
  if (rest < 0) {  // nanos are never negative
    rest += 1000000;
    --seconds;
  }
  google::protobuf::Timestamp ts;
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(rest * 1000));
  return ts;
}

inline absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

inline google::protobuf::Duration ToProto(absl::Duration d) {
  const int64_t us = absl::ToInt64Microseconds(d);
  google::protobuf::Duration out;
  out.set_seconds(us / 1000000);
  out.set_nanos(static_cast<int32_t>(us % 1000000) * 1000);
  return out;
}

inline absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace wasentinel
